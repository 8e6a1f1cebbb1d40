"""What a calendar change means (calsync.notifications), on the fakes: our own write's echo is not a
reschedule, a calendar-side move or delete is reported once, and the conflict rule (SolarNexus wins
unless its new version adopts the user's move)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calsync.cronofy_event import CronofyEvent
from calsync.drift import APPLY_LAG
from calsync.milestones import in_accepted_years
from calsync.models import ConnectionState, iso, utcnow
from calsync.notifications import changed_after_our_write
from tests.fakes.world import World, milestone

MOVED = ("2027-01-05T15:00:00Z", "2027-01-05T17:00:00Z")


# Every rule holds whichever read a notification makes: the read of the changed events, or the read of
# everything in the window when that read is the day's check as well (Connection.check_rides_on_read).
READS = {"changes": 3, "everything": 1}  # the last full read's pages


@pytest.fixture(params=sorted(READS))
def read(request) -> str:
    return request.param


def connected(read: str = "everything") -> World:
    world = World()
    world.connect("u_1", full_read_pages=READS[read], last_checked_at=utcnow() - timedelta(hours=1))
    return world


def test_the_echo_of_our_own_write_is_not_a_reschedule(read):
    world = connected(read)
    world.publish(milestone())
    assert world.notify("u_1")["reported"] == 0
    world.publish(milestone(version=2, start=utcnow() + timedelta(days=5)))  # a new time from SolarNexus
    assert world.notify("u_1")["reported"] == 0
    assert world.publisher.sent == []


def test_a_move_on_the_calendar_is_reported_once_on_the_version_we_pushed(read):
    world = connected(read)
    world.publish(milestone())
    world.cronofy.user_moves("u_1", "sn-m_1", *MOVED)
    assert world.notify("u_1")["reported"] == 1
    assert world.notify("u_1")["reported"] == 0  # Cronofy's second delivery: already reported
    (change,) = world.publisher.changes("milestone.rescheduled_on_calendar")
    assert (change.milestone_id, change.based_on_version, change.start, change.end) == ("m_1", 1, *MOVED)
    assert world.store.get_ref("m_1", "u_1").user_moved_start == MOVED[0]


def test_solarnexus_wins_a_conflict_and_its_adopted_move_is_not_written_again(read):
    world = connected(read)
    m = milestone()
    world.publish(m)
    world.cronofy.user_moves("u_1", "sn-m_1", *MOVED)
    world.notify("u_1")
    batches = len(world.cronofy.batches)
    # the core platform applies the move (based_on_version still current): v2 carries the user's times
    adopted = m.model_copy(update={"version": 2, "start": MOVED[0], "end": MOVED[1]})
    world.publish(adopted)
    assert len(world.cronofy.batches) == batches  # the calendar already shows it: no write
    assert world.notify("u_1")["reported"] == 0
    # someone in SolarNexus reschedules meanwhile: SolarNexus's time goes back on the calendar
    world.cronofy.user_moves("u_1", "sn-m_1", "2027-01-06T15:00:00Z", "2027-01-06T16:00:00Z")
    world.notify("u_1")
    newer = m.model_copy(update={"version": 3})
    world.publish(newer)
    event = world.cronofy.find("u_1", "sn-m_1")
    assert (event.start, event.end) == (newer.start, newer.end)
    assert world.notify("u_1")["reported"] == 0  # and that write's echo is no reschedule
    assert [c.based_on_version for c in world.publisher.changes("milestone.rescheduled_on_calendar")] == [1, 2]


def test_the_echo_of_a_newer_write_whose_ref_is_not_recorded_yet_is_not_a_reschedule(read):
    world = connected(read)
    m = milestone()
    world.publish(m)
    newer = m.model_copy(update={"version": 2, "start": MOVED[0], "end": MOVED[1]})
    world.store.put_mirror_if_newer("org_1", "m_1", 2, newer.model_dump_json())
    world.cronofy.client("u_1").batch([{"method": "POST", "relative_url": "/v1/calendars/cal_1/events",
                                        "data": {"event_id": "sn-m_1", "summary": "Install m_1",
                                                 "start": MOVED[0], "end": MOVED[1]}}])
    assert world.notify("u_1")["reported"] == 0


def test_a_delete_on_the_calendar_is_reported_and_the_event_stays_away_until_the_milestone_changes(read):
    world = connected(read)
    m = milestone()
    world.publish(m)
    world.cronofy.user_deletes("u_1", "sn-m_1")
    assert world.notify("u_1")["reported"] == 1
    (removed,) = world.publisher.changes("milestone.removed_on_calendar")
    assert removed.based_on_version == 1
    world.publish(m)  # a replay of the same version
    assert world.cronofy.managed("u_1") == {}
    world.publish(m.model_copy(update={"version": 2, "name": "Install (revised)"}))
    assert set(world.cronofy.managed("u_1")) == {("cal_1", "sn-m_1")}


@pytest.mark.parametrize("full_read_pages", [3, 1])  # the changed events' read; the full read (the check)
def test_other_events_refresh_busy_periods_and_never_count_as_ours(full_read_pages):
    world = World()
    world.connect("u_1", last_checked_at=utcnow() - timedelta(hours=1), full_read_pages=full_read_pages)
    world.publish(milestone())
    start = (utcnow() + timedelta(days=3)).replace(hour=10, minute=0, second=0, microsecond=0)
    world.cronofy.user_adds("u_1", "cal_1", iso(start), iso(start + timedelta(hours=1)))
    result = world.notify("u_1")
    assert result["reported"] == 0
    assert result.get("busy_weeks_changed", result.get("busy_periods")) == 1
    assert len(world.busy.store.weeks_of_user("u_1")) >= 1
    periods = world.busy.periods(["u_1"], start - timedelta(days=1), start + timedelta(days=1))["u_1"]
    assert periods.blocks == [(start, start + timedelta(hours=1))]  # the user's event; never ours


def test_a_disconnected_profile_or_revoked_grant_needs_reauth_and_foreign_channels_are_ignored():
    world = connected()
    assert world.processor.process({"notification_type": "change", "channel_id": "chn_other",
                                    "user_id": "u_1"}) == {"outcome": "no_connection"}
    world.cronofy.revoke("u_1")
    assert world.notify("u_1") == {"outcome": "needs_reauth"}
    assert world.store.get_connection("u_1").state == ConnectionState.NEEDS_REAUTH
    world = connected()
    assert world.processor.process({"notification_type": "profile_disconnected", "channel_id": "chn_u_1",
                                    "user_id": "u_1"}) == {"outcome": "needs_reauth"}
    assert world.tokens.reauth == [("u_1", "profile_disconnected")]


def test_a_profile_disconnected_push_is_acted_on_only_when_cronofy_confirms_it():
    """Issue 20, finding 6: the push has no time or nonce, so a replayed one must not break a working
    connection: Cronofy's userinfo is asked first (one request)."""
    for linked, outcome in ((True, "profile_connected"), (False, "needs_reauth")):
        world = connected()
        world.cronofy.account("u_1").profile_connected = linked
        before = world.cronofy.requests_sent
        assert world.processor.process({"notification_type": "profile_disconnected", "channel_id": "chn_u_1",
                                        "user_id": "u_1"}) == {"outcome": outcome}
        assert world.cronofy.requests_sent == before + 1
        state = world.store.get_connection("u_1").state
        assert state == (ConnectionState.CONNECTED if linked else ConnectionState.NEEDS_REAUTH)


def test_a_change_counts_as_after_our_write_only_when_cronofy_says_so():
    world = connected()
    world.publish(milestone())
    ref = world.store.get_ref("m_1", "u_1")
    stamp = ref.updated_at
    assert not changed_after_our_write(CronofyEvent(updated=stamp.strftime("%Y-%m-%dT%H:%M:%SZ")), ref)
    # Cronofy applies our write a moment after its 202: a change stamped within APPLY_LAG is that
    landing = stamp + APPLY_LAG
    assert not changed_after_our_write(CronofyEvent(updated=landing.strftime("%Y-%m-%dT%H:%M:%SZ")), ref)
    later = landing + timedelta(seconds=1)
    assert changed_after_our_write(CronofyEvent(updated=later.strftime("%Y-%m-%dT%H:%M:%SZ")), ref)
    assert changed_after_our_write(CronofyEvent(), ref)  # no `updated`: assume the user changed it


@settings(max_examples=30, deadline=None)
@given(year=st.integers(min_value=1, max_value=9999) | st.sampled_from([1999, 2000, 2099, 2100]),
       all_day=st.booleans())
def test_a_move_outside_the_years_the_core_accepts_is_a_removal_never_a_reschedule(year, all_day):
    """Issue 20, finding 9: the core platform schedules milestones in 2000-2099 only (calsync.milestones
    YEARS); a calendar-side move outside them is reported as a removal. (The change read: the fake's full
    read does not model include_moved; tests/integration/test_two_way_and_busy.py covers that read.)"""
    world = connected("changes")
    world.publish(milestone())
    day = f"{year:04d}-06-01"
    moved = (day, f"{year:04d}-06-02") if all_day else (f"{day}T09:00:00Z", f"{day}T11:00:00Z")
    world.cronofy.user_moves("u_1", "sn-m_1", *moved)
    assert world.notify("u_1")["reported"] == 1
    accepted = 2000 <= year <= 2099
    assert in_accepted_years(*moved) is accepted
    kinds = [type(m).__name__ for m in world.publisher.sent if "OnCalendar" in type(m).__name__]
    assert kinds == ["MilestoneRescheduledOnCalendar" if accepted else "MilestoneRemovedOnCalendar"]
    assert world.notify("u_1")["reported"] == 0  # said once
