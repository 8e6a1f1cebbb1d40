"""The reconciler's decisions (calsync.reconcile): the drift check is pure (`calsync.drift.find_drift`); a visit and a
run are played on the in-memory store and the fake Cronofy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from calsync import drift as drift_rules
from calsync.cronofy_event import CronofyEvent
from calsync.drift import find_drift
from calsync.models import CHECK_EVERY, ConnectionState, EventRef, iso, utcnow
from tests.fakes.world import World, milestone

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(hours=1)


def ref(milestone_id: str = "m_1", **fields) -> EventRef:
    return EventRef(**({"milestone_id": milestone_id, "user_id": "u_1", "calendar_id": "cal_1",
                        "event_id": f"sn-{milestone_id}", "version": 1, "content_hash": "h",
                        "start": "2026-12-05T10:00:00Z", "end": "2026-12-05T12:00:00Z", "all_day": False,
                        "timezone": "UTC", "summary": "Install", "updated_at": LONG_AGO} | fields))


def event(milestone_id: str = "m_1", **fields) -> CronofyEvent:
    return CronofyEvent(**({"event_id": f"sn-{milestone_id}", "calendar_id": "cal_1", "summary": "Install",
                            "start": "2026-12-05T10:00:00Z", "end": "2026-12-05T12:00:00Z",
                            "updated": "2026-12-01T10:00:00Z"} | fields))


def drift(events, refs):
    return find_drift(events, {r.event_id: r for r in refs}, "cal_1", "2026-11-01", "2027-06-01")


@pytest.fixture(autouse=True)
def frozen_recent_writes(monkeypatch):
    monkeypatch.setattr(drift_rules, "utcnow", lambda: NOW)


def test_an_event_as_we_wrote_it_is_no_drift():
    d = drift([event()], [ref()])
    assert d.rewrite == set() and d.orphans == [] and not +d.repairs
    # the user's reported move is expected there
    moved = ref(user_moved_start="2026-12-06T10:00:00Z", user_moved_end="2026-12-06T12:00:00Z")
    assert drift([event(start="2026-12-06T10:00:00Z", end="2026-12-06T12:00:00Z")], [moved]).rewrite == set()


def test_moved_retitled_and_missing_events_are_written_again():
    d = drift([event("m_1", start="2026-12-07T10:00:00Z"), event("m_2", summary="Lunch")],
              [ref("m_1"), ref("m_2"), ref("m_3")])
    assert d.rewrite == {"m_1", "m_2", "m_3"}
    assert (d.repairs["moved"], d.repairs["content"], d.repairs["missing"]) == (1, 1, 1)
    outside = ref("m_4", start="2027-08-01T10:00:00Z")  # beyond the read window: not missing
    assert drift([], [outside]).rewrite == set()


def test_a_tombstone_older_than_our_write_is_lost_but_the_users_delete_is_not_ours_to_undo():
    lost = drift([event(deleted=True, updated="2026-12-01T10:00:00Z")], [ref()])
    assert lost.rewrite == {"m_1"} and lost.repairs["missing"] == 1
    by_user = drift([event(deleted=True, updated="2026-12-01T11:30:00Z")], [ref()])
    assert by_user.rewrite == set()
    reported = drift([event(deleted=True, updated="2026-12-01T10:00:00Z")], [ref(removed_by_user_version=1)])
    assert reported.rewrite == set()


def test_events_we_have_no_ref_for_on_that_calendar_are_orphans():
    d = drift([event("m_9"), event("m_1", calendar_id="cal_old")], [ref()])
    assert d.orphans == [("cal_1", "sn-m_9"), ("cal_old", "sn-m_1")]
    assert d.rewrite == {"m_1"} and d.repairs["missing"] == 1  # not on cal_1, where its ref says it is


def test_refs_written_moments_ago_are_not_judged():
    fresh = ref(updated_at=NOW - timedelta(seconds=30))
    assert drift([event(start="2026-12-07T10:00:00Z")], [fresh]).rewrite == set()
    assert drift([], [fresh]).rewrite == set()


# ---- visits on the fakes ------------------------------------------------------------------------------


def lose_silently(world: World, event_id: str, user_id: str = "u_1") -> None:
    """The provider loses one of our events: gone, no tombstone, no notification."""
    lost = world.cronofy.find(user_id, event_id)
    world.cronofy.account(user_id).calendars[lost.calendar_id].pop(lost.event_uid)


@pytest.fixture
def world(monkeypatch) -> World:
    monkeypatch.undo()
    monkeypatch.setattr(drift_rules, "RECENT_WRITE", timedelta(0))
    w = World()
    w.connect("u_1")
    return w


def test_a_visit_puts_a_drifted_calendar_back_in_line(world):
    for i in range(3):
        world.publish(milestone(f"m_{i}"))
    expected = world.cronofy.managed("u_1")
    lose_silently(world, "sn-m_0")
    world.cronofy.find("u_1", "sn-m_1").summary = "Lunch"  # retitled silently
    world.cronofy.client("u_1").batch([{"method": "POST", "relative_url": "/v1/calendars/cal_1/events",
                                        "data": {"event_id": "sn-ghost", "summary": "Orphan",
                                                 "start": "2026-12-20T10:00:00Z", "end": "2026-12-20T11:00:00Z"}}])
    repairs = world.reconciler.visit("u_1")
    assert (repairs["missing"], repairs["content"], repairs["orphans"]) == (1, 1, 1)
    assert world.cronofy.managed("u_1") == expected
    assert world.reconciler.visit("u_1")["orphans"] == 0  # and the next visit finds nothing


def test_a_visit_catches_up_on_a_lost_notification_and_writes_never_pushed_milestones(world):
    world.publish(milestone("m_1"))
    written = world.store.get_ref("m_1", "u_1")
    world.store.put_ref(written.model_copy(update={"updated_at": written.updated_at - timedelta(minutes=5)}))
    world.cronofy.user_moves("u_1", "sn-m_1", "2027-01-05T15:00:00Z", "2027-01-05T17:00:00Z")
    world.store.put_mirror_if_newer("org_1", "m_2", 1, milestone("m_2").model_dump_json())
    world.store.set_schedule_index("m_2", {"u_1": world.store.milestone_partition("m_1")[1]["u_1"]}, [])
    repairs = world.reconciler.visit("u_1")
    assert repairs["reported"] == 1 and repairs["never_pushed"] == 1 and repairs["moved"] == 0
    assert ("cal_1", "sn-m_2") in world.cronofy.managed("u_1")


def test_a_visit_reopens_a_closed_channel_and_rebuilds_busy_periods(world):
    world.store.update_connection("u_1", lambda c: c.model_copy(update={
        "channel_seen_at": utcnow() - timedelta(days=8)}))
    repairs = world.reconciler.visit("u_1")
    assert repairs["channels"] == 1 and repairs["busy_rebuilt"] == 1
    conn = world.store.get_connection("u_1")
    assert conn.channel_id in world.cronofy.account("u_1").channels and conn.busy_rebuilt_at is not None


def test_stuck_connections_get_their_job_again_and_revoked_ones_need_reauth(world):
    world.connect("u_2", state=ConnectionState.DISCONNECTING)
    world.store.update_connection("u_2", lambda c: c.model_copy(update={"updated_at": utcnow() - timedelta(hours=1)}))
    assert world.reconciler.visit("u_2")["cleanups_requeued"] == 1
    assert world.publisher.sent[-1][:3] == ("request_disconnect", "org_1", "u_2")
    world.connect("u_3", state=ConnectionState.SYNCING)
    world.store.update_connection("u_3", lambda c: c.model_copy(update={"updated_at": utcnow() - timedelta(hours=1)}))
    assert world.reconciler.visit("u_3")["backfills_restarted"] == 1 and world.tokens.backfills == ["u_3"]
    world.cronofy.revoke("u_1")
    assert world.reconciler.visit("u_1")["needs_reauth"] == 1


def test_a_run_visits_the_due_users_within_its_budget_and_one_failure_stops_no_one(world, monkeypatch):
    world.connect("u_2")
    for user_id, days in (("u_1", 3), ("u_2", 2)):
        checked = utcnow() - timedelta(days=days)
        world.store.update_connection(user_id, lambda c, at=checked: c.model_copy(update={"last_checked_at": at}))
    report = world.reconciler.run()
    assert report["users"] == 2 and report["cronofy_requests"] > 0 and report["backlog"] == 0
    world.reconciler.max_requests = 0
    assert world.reconciler.run(["u_1"])["stopped_for_budget"] == 1

    world.reconciler.max_requests = 1000

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(world.processor, "check", broken)
    report = world.reconciler.run(["u_1", "u_2"])
    assert report["errors"] == 2 and report["users"] == 2
    assert world.store.get_connection("u_1").reconcile_error == "RuntimeError: boom"
    assert world.store.get_connection("u_1").reconcile_retry_at >= utcnow() + timedelta(minutes=59)


def test_a_visit_cronofy_did_not_answer_is_tried_again_in_ten_minutes(world, monkeypatch):
    from calsync.cronofy import CronofyUnavailable

    def unanswered(*args, **kwargs):
        raise CronofyUnavailable("POST /oauth/token: ReadTimeout")

    monkeypatch.setattr(world.processor, "check", unanswered)
    assert world.reconciler.run(["u_1"])["errors"] == 1
    retry = world.store.get_connection("u_1").reconcile_retry_at
    assert utcnow() + timedelta(minutes=9) <= retry <= utcnow() + timedelta(minutes=11)


# ---- a notification's read that is the day's check -------------------------------------------------


def test_a_notification_restores_a_lost_event_with_the_one_read_it_makes_when_that_fits_a_page(world):
    for i in range(3):
        world.publish(milestone(f"m_{i}"))
    expected = world.cronofy.managed("u_1")
    lose_silently(world, "sn-m_0")
    start = (utcnow() + timedelta(days=2)).replace(hour=9, minute=0, second=0, microsecond=0)
    world.cronofy.user_adds("u_1", "cal_1", iso(start), iso(start + timedelta(hours=1)))  # what the user did
    world.store.update_connection("u_1", lambda c: c.model_copy(update={
        "last_checked_at": utcnow() - timedelta(hours=1), "full_read_pages": 1}))
    before = world.cronofy.requests_sent
    result = world.notify("u_1")
    assert result["missing"] == 1 and result["busy_periods"] == 1
    assert world.cronofy.requests_sent - before == 2  # the read, and the write that restores the event
    assert world.cronofy.managed("u_1") == expected
    conn = world.store.get_connection("u_1")
    assert utcnow() - conn.last_checked_at < timedelta(minutes=1) and conn.full_read_pages == 1
    assert conn.busy_rebuilt_at == conn.last_checked_at
    assert conn.due_at() == conn.last_checked_at + CHECK_EVERY  # no visit of its own for another day


def test_a_notification_reads_only_the_changes_of_a_calendar_too_big_for_one_page_checked_lately(world):
    world.publish(milestone("m_0"))
    lose_silently(world, "sn-m_0")
    checked = utcnow() - timedelta(hours=1)
    world.store.update_connection("u_1", lambda c: c.model_copy(update={"last_checked_at": checked,
                                                                          "full_read_pages": 3}))
    start = (utcnow() + timedelta(days=2)).replace(hour=9, minute=0, second=0, microsecond=0)
    world.cronofy.user_adds("u_1", "cal_1", iso(start), iso(start + timedelta(hours=1)))
    result = world.notify("u_1")
    assert result["busy_weeks_changed"] == 1 and "never_pushed" not in result  # the changed events only
    assert ("cal_1", "sn-m_0") not in world.cronofy.managed("u_1")  # the reconciler's, later
    assert world.store.get_connection("u_1").last_checked_at == checked


def test_a_move_made_just_after_our_write_is_reported_by_a_full_read_as_by_a_notification(world):
    world.publish(milestone("m_1"))
    world.cronofy.user_moves("u_1", "sn-m_1", "2027-01-05T15:00:00Z", "2027-01-05T17:00:00Z")  # same second
    result = world.notify("u_1")  # never checked: the read is the check
    assert "never_pushed" in result and result["reported"] == 1 and result.get("moved", 0) == 0  # a full read
    assert len(world.publisher.changes("milestone.rescheduled_on_calendar")) == 1


def test_a_visit_reads_everything_once_when_that_fits_on_a_page(world):
    world.publish(milestone("m_1"))
    world.store.update_connection("u_1", lambda c: c.model_copy(update={
        "full_read_pages": 1, "busy_rebuilt_at": utcnow() - timedelta(days=1),
        "channel_seen_at": utcnow()}))
    before = world.cronofy.requests_sent
    assert world.reconciler.visit("u_1")["busy_rebuilt"] == 1
    assert world.cronofy.requests_sent - before == 1
    world.store.update_connection("u_1", lambda c: c.model_copy(update={"full_read_pages": 4}))
    assert world.reconciler.visit("u_1")["busy_rebuilt"] == 0  # only SolarNexus's events: fewer pages
