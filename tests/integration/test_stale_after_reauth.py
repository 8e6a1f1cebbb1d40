"""Stale SolarNexus events left on a calendar while its connection was in needs_reauth are reached
after the relink, through the real handlers, client and storage against the local stack (moto, the
Cronofy emulator, the backfill state machine).

While a user's grant is revoked (needs_reauth), a milestone push cannot write to their calendar: a
milestone reassigned away from them, unscheduled or rescheduled meanwhile leaves its old event on their
calendar, and its event ref stays. Two rules of calsync bring those events in line:

- the daily check (`NotificationProcessor.check`, a reconciler visit) syncs our events on the calendar
  whose milestone no longer names the user (`unlisted`), so it deletes them (or moves one rescheduled
  out of the backfill's window), and those whose milestone still names the user but whose event ref's
  version is behind the milestone's mirror (`behind`), so it moves one rescheduled meanwhile. Proven on
  a relink whose backfill could not start: the connection is writable again (connected) with nothing
  but the check to repair it. A check of users whose events all match writes nothing;
- the backfill (`BackfillSteps.plan`) plans every event already written for the user (their refs),
  not only on a calendar switch: the relink's backfill, run by its state machine, removes the events
  of milestones that left the user and moves the one rescheduled out of its window.
"""

from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from calsync import wiring
from calsync.milestones import event_id_for
from tests.helpers import connect, in_days, iso, managed_events, milestone, push


def reconcile(stack, *user_ids):
    return stack.invoke("ReconcilerFunction", {"user_ids": list(user_ids)})


def batches(stack) -> int:
    """Cronofy writes (SolarNexus writes only through /v1/batch)."""
    return stack.emulator.count_requests(method="POST", path_prefix="/v1/batch")


def to_needs_reauth(stack, session, user_id):
    """The user revokes SolarNexus at their provider; the reconciler's next visit meets invalid_grant."""
    stack.emulator.revoke_account(wiring.store().get_connection(user_id).cronofy_sub)
    assert reconcile(stack, user_id)["needs_reauth"] == 1
    assert session.get(stack.url("/v1/calendar/connection")).json()["state"] == "needs_reauth"


def relink_without_backfill(stack, teammate, monkeypatch, miguel_cal):
    """Miguel relinks through the consent page and the OAuth callback; the backfill could not start (Step
    Functions throttled): the connection is connected again, and only the daily check repairs the calendar."""
    def throttled(*args, **kwargs):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "StartExecution")

    executions = len(stack.executions())
    monkeypatch.setattr(wiring.connection_service().workflow, "start", throttled)
    assert connect(stack, teammate["session"], "microsoft", teammate["account"]) == miguel_cal
    monkeypatch.undo()
    assert len(stack.executions()) == executions  # no backfill ran
    assert "backfill could not start" in teammate["session"].get(stack.url("/v1/calendar/connection")).json()[
        "last_error"]


def unscheduled(milestone_id, version, assignees):
    message = milestone(milestone_id, version, assignees, status="unscheduled")
    message["milestone"].update(start=None, end=None)
    return message


@pytest.mark.parametrize("left", ["reassigned", "unscheduled"])
def test_the_daily_check_removes_an_event_that_left_the_user_while_they_needed_reauth(
        stack, jane_cal, teammate, miguel_cal, monkeypatch, left):
    assert push(stack, milestone("ms_left", 1, ["u_miguel"], in_days(4)),
                milestone("ms_kept", 1, ["u_miguel", "u_jane"], in_days(5))) == set()
    assert set(managed_events(stack, miguel_cal)) == {event_id_for("ms_left"), event_id_for("ms_kept")}
    to_needs_reauth(stack, teammate["session"], "u_miguel")

    # Meanwhile the office reassigns the milestone to Jane (or unschedules it): Miguel cannot be written to
    change = (milestone("ms_left", 2, ["u_jane"], in_days(4)) if left == "reassigned"
              else unscheduled("ms_left", 2, ["u_miguel"]))
    assert push(stack, change) == set()
    assert event_id_for("ms_left") in managed_events(stack, miguel_cal)  # stale, its ref kept
    assert wiring.store().get_ref("ms_left", "u_miguel") is not None
    assert (event_id_for("ms_left") in managed_events(stack, jane_cal)) == (left == "reassigned")

    relink_without_backfill(stack, teammate, monkeypatch, miguel_cal)
    assert event_id_for("ms_left") in managed_events(stack, miguel_cal)

    report = reconcile(stack, "u_miguel")
    assert set(managed_events(stack, miguel_cal)) == {event_id_for("ms_kept")}
    assert report.get("unlisted", 0) == 1 and report.get("errors", 0) == 0, report
    assert wiring.store().get_ref("ms_left", "u_miguel") is None
    jane_has = set(managed_events(stack, jane_cal))
    assert jane_has == ({event_id_for("ms_left"), event_id_for("ms_kept")} if left == "reassigned"
                        else {event_id_for("ms_kept")})

    # Calendars whose events all match their milestones: the check writes nothing
    stack.emulator.clear_request_log()
    for user_id in ("u_miguel", "u_jane"):
        report = reconcile(stack, user_id)
        assert report.get("unlisted", 0) == 0 and report.get("errors", 0) == 0, report
    assert batches(stack) == 0
    assert set(managed_events(stack, miguel_cal)) == {event_id_for("ms_kept")}
    assert set(managed_events(stack, jane_cal)) == jane_has


def test_the_daily_check_moves_an_event_rescheduled_while_the_user_needed_reauth(
        stack, jane_cal, teammate, miguel_cal, monkeypatch):
    old_day, new_day, kept_day = in_days(4), in_days(6), in_days(5)
    moved, kept = event_id_for("ms_moved"), event_id_for("ms_kept")
    assert push(stack, milestone("ms_moved", 1, ["u_miguel", "u_jane"], old_day),
                milestone("ms_kept", 1, ["u_miguel"], kept_day)) == set()
    before = managed_events(stack, miguel_cal)
    assert set(before) == {moved, kept} and before[moved]["start"] == iso(old_day)
    to_needs_reauth(stack, teammate["session"], "u_miguel")

    # Meanwhile the office moves the milestone to another day within the window, still Miguel's (and
    # Jane's): Jane's calendar follows, Miguel cannot be written to; his ref stays at the old version
    assert push(stack, milestone("ms_moved", 2, ["u_miguel", "u_jane"], new_day)) == set()
    assert managed_events(stack, jane_cal)[moved]["start"] == iso(new_day)
    assert managed_events(stack, miguel_cal) == before
    assert wiring.store().get_ref("ms_moved", "u_miguel").version == 1

    relink_without_backfill(stack, teammate, monkeypatch, miguel_cal)
    assert managed_events(stack, miguel_cal)[moved]["start"] == iso(old_day)  # still the old day
    executions = len(stack.executions())

    # The milestone still names Miguel and his event matches its ref (no drift): only the ref's version,
    # behind the mirror's, tells the check his event is stale
    report = reconcile(stack, "u_miguel")
    assert report.get("behind", 0) == 1 and report.get("unlisted", 0) == 0, report
    assert report.get("errors", 0) == 0 and report.get("backfills_restarted", 0) == 0, report
    after = managed_events(stack, miguel_cal)
    assert set(after) == {moved, kept}
    assert (after[moved]["start"], after[moved]["end"]) == (iso(new_day), iso(new_day + timedelta(hours=2)))
    assert after[kept] == before[kept]  # not written again
    ref = wiring.store().get_ref("ms_moved", "u_miguel")
    assert (ref.version, ref.start) == (2, iso(new_day))
    assert len(stack.executions()) == executions  # the check did it, no backfill

    # The ref caught up with the mirror: the next check finds nothing behind and writes nothing
    stack.emulator.clear_request_log()
    report = reconcile(stack, "u_miguel")
    assert report.get("behind", 0) == 0 and report.get("errors", 0) == 0, report
    assert batches(stack) == 0
    assert managed_events(stack, miguel_cal) == after


def test_the_relinks_backfill_brings_in_line_what_changed_while_the_user_needed_reauth(stack, teammate, miguel_cal):
    kept = [milestone(f"ms_kept{i}", 1, ["u_miguel"], in_days(2 + i)) for i in range(2)]
    assert push(stack, *kept,
                milestone("ms_away", 1, ["u_miguel"], in_days(3)),
                milestone("ms_off", 1, ["u_miguel"], in_days(4)),
                milestone("ms_moved", 1, ["u_miguel"], in_days(6)),
                milestone("ms_back", 1, ["u_miguel"], in_days(7))) == set()
    before = managed_events(stack, miguel_cal)
    assert len(before) == 6
    to_needs_reauth(stack, teammate["session"], "u_miguel")

    # While Miguel cannot be written to: one milestone goes to a teammate, one is unscheduled, one moves to
    # another day, and one is corrected to the day it really happened, weeks ago (before the backfill's
    # 30-day window: only its event already written can bring it along)
    assert push(stack,
                milestone("ms_away", 2, ["u_ana"], in_days(3)),
                unscheduled("ms_off", 2, ["u_miguel"]),
                milestone("ms_moved", 2, ["u_miguel"], in_days(9)),
                milestone("ms_back", 2, ["u_miguel"], in_days(-40))) == set()
    assert managed_events(stack, miguel_cal) == before  # nothing reached the calendar

    # Miguel relinks through the consent page and the OAuth callback; the backfill's state machine runs
    assert connect(stack, teammate["session"], "microsoft", teammate["account"]) == miguel_cal
    stack.wait_for_executions()
    assert sorted(e["status"] for e in stack.executions()) == ["SUCCEEDED", "SUCCEEDED"]
    status = teammate["session"].get(stack.url("/v1/calendar/connection")).json()
    assert status["state"] == "connected" and status["backfill"]["status"] == "succeeded"

    after = managed_events(stack, miguel_cal)
    assert set(after) == {event_id_for(m) for m in ("ms_kept0", "ms_kept1", "ms_moved", "ms_back")}
    assert after[event_id_for("ms_moved")]["start"] == iso(in_days(9))
    assert after[event_id_for("ms_back")]["start"] == iso(in_days(-40))
    for kept_event in ("ms_kept0", "ms_kept1"):
        assert after[event_id_for(kept_event)] == before[event_id_for(kept_event)]  # not written again
    store = wiring.store()
    assert store.get_ref("ms_away", "u_miguel") is None and store.get_ref("ms_off", "u_miguel") is None


def test_a_move_the_user_made_while_they_needed_reauth_reaches_solarnexus_after_the_relink(stack, teammate, miguel_cal):
    """Miguel moves an install on his phone while his grant is revoked: its notification is skipped (nothing
    can be read) and the relink's backfill writes from the mirror, so neither reports it. The relink asks
    the reconciler for a check right after the backfill: its first scheduled run reports the move, as a
    notification would have, instead of a day later."""
    assert push(stack, milestone("ms_m", 3, ["u_miguel"], in_days(4))) == set()
    to_needs_reauth(stack, teammate["session"], "u_miguel")
    stack.queue_messages("CalendarChangesQueue")
    stack.emulator.advance_clock(5)
    stack.emulator.move_event(miguel_cal, event_id=event_id_for("ms_m"), start=iso(in_days(5)),
                              end=iso(in_days(5) + timedelta(hours=2)))
    stack.drain()  # its notification comes, and is skipped: the connection needs reauth

    assert connect(stack, teammate["session"], "microsoft", teammate["account"]) == miguel_cal
    stack.wait_for_executions()
    assert managed_events(stack, miguel_cal)[event_id_for("ms_m")]["start"] == iso(in_days(5))  # not overwritten
    assert [m for m in stack.queue_messages("CalendarChangesQueue")
            if m["type"] == "milestone.rescheduled_on_calendar"] == []  # nothing has reported it yet

    report = stack.invoke("ReconcilerFunction", {})  # the schedule's next run, not a manual visit
    assert report["users"] == 1 and report.get("errors", 0) == 0, report
    moves = [m for m in stack.queue_messages("CalendarChangesQueue")
             if m["type"] == "milestone.rescheduled_on_calendar"]
    assert [(m["milestone_id"], m["based_on_version"], m["start"]) for m in moves] == [("ms_m", 3, iso(in_days(5)))]
    assert wiring.store().get_connection("u_miguel").visit_requested_at is None  # asked once, done
