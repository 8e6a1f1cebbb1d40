"""The reconciler heals what notifications did not: drift, lost notifications, closed channels, busy
periods; it visits the most overdue users first within what the limiter leaves, and one failing user
never stops a run."""

import os
import time
from datetime import timedelta

import pytest

from calsync import wiring
from calsync.milestones import event_id_for
from calsync.models import CHECK_BEFORE_EXPIRY, CHECK_EVERY, utcnow
from calsync.reconcile import URGENT_AFTER
from tests.helpers import in_days, iso, managed_events, milestone, push
from tests.schema import assert_valid_message

# The crew of the fairness test below: 12 in `make test`, 40 in `make chaos` (RECONCILE_CREW=40). With
# room for two visits a run, a crew of n is all visited within n/2 runs, or some user was passed over.
CREW = int(os.environ.get("RECONCILE_CREW", "12"))


def reconcile(stack, **event):
    return stack.invoke("ReconcilerFunction", event)


def age(user_id, **ago):
    """Move a connection's bookkeeping into the past: age("u", last_checked_at=timedelta(hours=25))."""
    now = utcnow()
    wiring.store().update_connection(user_id, lambda c: c.model_copy(update={k: now - d for k, d in ago.items()}))


def lose_notifications(stack):
    stack.emulator.wait_for_notifications()
    stack.queue_messages("NotificationsQueue")


def written_long_ago(monkeypatch):
    """Drift the tests make by hand happens long after our writes (the reconciler leaves alone what
    it wrote within drift.RECENT_WRITE: Cronofy may not have applied it yet)."""
    from calsync import drift as module

    monkeypatch.setattr(module, "RECENT_WRITE", timedelta(0))


def test_a_run_right_after_our_writes_repairs_nothing(stack, jane, jane_cal):
    """Cronofy applies writes after answering 202: a reconcile visit in between sees the calendar as it
    was. It must not take that for drift (and write everything again)."""
    stack.emulator.configure(write_delay=60)  # Cronofy is slow today
    msgs = [milestone(f"ms_{i}", 1, ["u_jane"], in_days(1 + i)) for i in range(3)]
    assert push(stack, *msgs) == set()
    assert stack.emulator.pending_writes == 3  # accepted, not applied
    stack.emulator.clear_request_log()
    report = reconcile(stack, user_ids=["u_jane"])
    assert report.get("missing", 0) == report.get("moved", 0) == report.get("never_pushed", 0) == 0
    assert stack.emulator.count_requests(method="POST", path_prefix="/v1/batch") == 0
    assert stack.emulator.count_requests(method="POST", path_prefix="/v1/calendars") == 0
    stack.emulator.configure(write_delay=1.0)
    assert set(managed_events(stack, jane_cal)) == {event_id_for(f"ms_{i}") for i in range(3)}


def test_a_drifted_calendar_is_back_in_line_after_one_run(stack, jane, jane_cal, monkeypatch):
    written_long_ago(monkeypatch)
    msgs = [milestone(f"ms_{i}", 1, ["u_jane"], in_days(1 + i)) for i in range(5)]
    assert push(stack, *msgs) == set()
    # Cronofy applies our writes a moment after its 202 (the emulator, a second later): their `updated`
    # is after our record of the write, and that is not a change of the user's
    stack.settle()
    expected = {e: (ev["start"], ev["end"], ev["summary"]) for e, ev in managed_events(stack, jane_cal).items()}
    emu = stack.emulator
    # Drift by hand, silently (no notification): one event lost, one moved, one retitled,
    # an extra SolarNexus event, and the push channel closed
    emu.drift_event(jane_cal, event_id_for("ms_0"), vanish=True)
    emu.drift_event(jane_cal, event_id_for("ms_1"), start=iso(in_days(20)), end=iso(in_days(20, 17)))
    emu.drift_event(jane_cal, event_id_for("ms_2"), summary="Lunch")
    service = wiring.connection_service()
    conn = service.store.get_connection("u_jane")
    service.user_client(conn).upsert_event(jane_cal, {
        "event_id": "sn-ghost", "summary": "Orphan", "start": {"time": iso(in_days(3)), "tzid": "Etc/UTC"},
        "end": {"time": iso(in_days(3, 16)), "tzid": "Etc/UTC"}})
    emu.close_channel(conn.channel_id)
    age("u_jane", channel_seen_at=timedelta(days=8))  # no notification for a week: the channel is listed
    stack.settle()  # the hand-made drift (and the orphan's write) is on the calendar
    report = reconcile(stack, user_ids=["u_jane"])
    assert (report["missing"], report["moved"], report["content"], report["orphans"], report["channels"]) == (
        1, 1, 1, 1, 1)
    now = {e: (ev["start"], ev["end"], ev["summary"]) for e, ev in managed_events(stack, jane_cal).items()}
    assert now == expected
    channels = emu.channels(conn.cronofy_sub)
    assert len(channels) == 1 and channels[0]["channel_id"] == service.store.get_connection("u_jane").channel_id
    # A second run finds nothing to repair
    report = reconcile(stack, user_ids=["u_jane"])
    assert report.get("missing", 0) == report.get("moved", 0) == report.get("orphans", 0) == 0


def test_a_slow_trip_to_cronofy_is_not_taken_for_the_users_change(stack, jane, jane_cal, monkeypatch):
    """A loaded machine (or network): our write reaches Cronofy seconds after we planned it, so the event's
    `updated` is seconds after the plan. Our record of the write is the time Cronofy accepted it, so a
    silent move afterwards is still drift to repair, not a move of the user's to report."""
    written_long_ago(monkeypatch)
    stack.emulator.add_fault(path_prefix="/v1/batch", status=None, latency_ms=4500, count=1)
    assert push(stack, milestone("ms_slow", 1, ["u_jane"], in_days(2))) == set()
    stack.settle()
    stack.queue_messages("CalendarChangesQueue")
    stack.emulator.drift_event(jane_cal, event_id_for("ms_slow"), start=iso(in_days(20)), end=iso(in_days(20, 17)))
    report = reconcile(stack, user_ids=["u_jane"])
    assert report.get("moved", 0) == 1
    assert managed_events(stack, jane_cal)[event_id_for("ms_slow")]["start"] == iso(in_days(2))
    assert [m for m in stack.queue_messages("CalendarChangesQueue")
            if m["type"] == "milestone.rescheduled_on_calendar"] == []


def test_a_lost_notification_still_reaches_solarnexus_and_the_move_is_kept(stack, jane_cal):
    assert push(stack, milestone("ms_m", 3, ["u_jane"], in_days(2))) == set()
    stack.queue_messages("CalendarChangesQueue")
    stack.emulator.advance_clock(5)  # the user moves it a little after our write
    stack.emulator.move_event(jane_cal, event_id=event_id_for("ms_m"), start=iso(in_days(4)), end=iso(in_days(4, 17)))
    lose_notifications(stack)
    reconcile(stack, user_ids=["u_jane"])
    moves = [m for m in stack.queue_messages("CalendarChangesQueue")
             if m["type"] == "milestone.rescheduled_on_calendar"]
    assert len(moves) == 1 and moves[0]["based_on_version"] == 3
    assert_valid_message(moves[0])
    assert managed_events(stack, jane_cal)[event_id_for("ms_m")]["start"] == iso(in_days(4))


def test_busy_periods_are_rebuilt_weekly_without_notifications(stack, jane, jane_cal):
    stack.emulator.add_external_event(jane_cal, "Roof inspection course", iso(in_days(30, 9)), iso(in_days(30, 12)))
    lose_notifications(stack)
    params = {"user_ids": "u_jane", "from": iso(in_days(29, 0)), "to": iso(in_days(31, 0))}
    assert jane["session"].get(stack.url("/v1/orgs/org_sunbright/busy"), params=params).json()["users"]["u_jane"] == []
    reconcile(stack, user_ids=["u_jane"])  # rebuilt at the backfill's end: not due yet
    assert jane["session"].get(stack.url("/v1/orgs/org_sunbright/busy"), params=params).json()["users"]["u_jane"] == []
    age("u_jane", busy_rebuilt_at=timedelta(days=8))
    report = reconcile(stack, user_ids=["u_jane"])
    assert report["busy_rebuilt"] == 1
    busy = jane["session"].get(stack.url("/v1/orgs/org_sunbright/busy"), params=params).json()["users"]["u_jane"]
    assert busy == [{"start": iso(in_days(30, 9)), "end": iso(in_days(30, 12))}]


def test_never_pushed_milestones_are_written(stack, jane_cal, monkeypatch):
    engine = wiring.sync_engine()
    monkeypatch.setattr(engine, "_execute", lambda writes, connections, result: {})  # the push "crashed"
    assert push(stack, milestone("ms_lost", 1, ["u_jane"], in_days(2))) == set()
    monkeypatch.undo()
    assert event_id_for("ms_lost") not in managed_events(stack, jane_cal)
    report = reconcile(stack, user_ids=["u_jane"])
    assert report["never_pushed"] == 1
    assert event_id_for("ms_lost") in managed_events(stack, jane_cal)


def test_a_quiet_healthy_visit_costs_one_request_and_finds_nothing(stack, jane_cal):
    stack.emulator.clear_request_log()
    report = reconcile(stack, user_ids=["u_jane"])  # the token from the connect is still fresh
    assert report["cronofy_requests"] == 1 == len(stack.emulator.request_log)
    assert not any(report.get(k) for k in ("missing", "moved", "orphans", "channels", "reported"))


def test_the_daily_check_of_a_big_calendar_rides_on_the_token_live_work_mints(stack, jane_cal):
    """Minting a token counts toward the shared limit: for a calendar too big for a notification's read to
    be the check at no cost, a token live work just minted brings the daily check forward to shortly
    before it expires, so the check costs its read and no token of its own."""
    store, service = wiring.store(), wiring.connection_service()
    store.update_connection("u_jane", lambda c: c.model_copy(update={"full_read_pages": 1}))
    age("u_jane", last_checked_at=timedelta(hours=21))
    service.user_client(store.get_connection("u_jane")).refresh()  # live work minted a token
    assert store.get_connection("u_jane").visit_requested_at is None  # one page: notifications check it
    store.update_connection("u_jane", lambda c: c.model_copy(update={"full_read_pages": 3}))
    age("u_jane", last_checked_at=timedelta(hours=10))
    service.user_client(store.get_connection("u_jane")).refresh()
    assert store.get_connection("u_jane").visit_requested_at is None  # checked 10 h ago: not yet
    age("u_jane", last_checked_at=timedelta(hours=21))
    client = service.user_client(store.get_connection("u_jane"))
    client.refresh()
    due = store.get_connection("u_jane").due_at()
    assert abs((due - (client.tokens.expires_at - CHECK_BEFORE_EXPIRY)).total_seconds()) < 1
    stack.emulator.clear_request_log()
    reconcile(stack, user_ids=["u_jane"])
    assert len(stack.emulator.request_log) == 1  # the read; the token was live
    assert store.get_connection("u_jane").visit_requested_at is None


def test_the_scheduled_run_visits_due_users_only_and_moves_them_a_day_on(stack, jane_cal, miguel_cal):
    store = wiring.store()
    report = reconcile(stack)  # both were checked at the end of their backfill: nobody is due
    assert report.get("users", 0) == 0 and report["backlog"] == 0
    age("u_miguel", last_checked_at=timedelta(hours=25))
    report = reconcile(stack)
    assert report["users"] == 1 and report["backlog"] == 0
    miguel = store.get_connection("u_miguel")
    assert miguel.last_checked_at >= utcnow() - timedelta(minutes=1)
    assert miguel.due_at() == miguel.last_checked_at + CHECK_EVERY
    assert store.users_due("9999", 10) == sorted(["u_jane", "u_miguel"], key=lambda u: store.get_connection(u).due_at())


def test_the_run_keeps_to_its_budget_and_what_the_limiter_leaves(stack, jane_cal, miguel_cal, monkeypatch):
    reconciler = wiring.reconciler()
    # both due, neither URGENT_AFTER past due (that is the next test)
    age("u_jane", last_checked_at=CHECK_EVERY + timedelta(minutes=10))
    age("u_miguel", last_checked_at=CHECK_EVERY + timedelta(minutes=5))
    monkeypatch.setattr(reconciler, "max_requests", 3)  # one visit (1 request): then 1 + 3 kept in hand > 3
    report = reconcile(stack)
    assert report["users"] == 1 and report["stopped_for_budget"] == 1 and report["backlog"] == 1
    assert wiring.store().get_connection("u_jane").last_checked_at > utcnow() - timedelta(minutes=1)  # most overdue
    monkeypatch.setattr(reconciler, "max_requests", 1000)
    limiter = wiring.rate_limiter()
    monkeypatch.setattr(limiter, "headroom", lambda: limiter.burst / 2)  # live work is using the rest
    report = reconcile(stack)
    assert report.get("users", 0) == 0 and report["stopped_for_budget"] == 1 and report["backlog"] == 1


def test_an_overdue_check_waits_in_line_while_live_work_keeps_the_limiter_busy(stack, jane_cal, miguel_cal,
                                                                               monkeypatch):
    """Live work keeps the shared limiter at half its burst for hours (the morning peaks of four time
    zones): a user due 10 minutes ago waits for a quieter run, but one URGENT_AFTER past due is checked
    anyway, its requests waiting in line behind calendar writes longer than queue work would (the
    client's own 1 s), so nobody's check slips past 24 h."""
    age("u_jane", last_checked_at=CHECK_EVERY + URGENT_AFTER + timedelta(minutes=5))
    age("u_miguel", last_checked_at=CHECK_EVERY + timedelta(minutes=10))
    limiter = wiring.rate_limiter()
    monkeypatch.setattr(limiter, "headroom", lambda: limiter.burst / 2)  # live work is using the rest
    # and the bucket is 1.5 s past the share calendar writes keep: a read behind them waits ~1.6 s
    tat = time.time() + (limiter.burst - limiter.interactive_burst) / limiter.rate + 1.5
    wiring.aws_client("dynamodb").put_item(TableName=wiring.get_settings().table_name, Item={
        "pk": {"S": "RATELIMIT#cronofy"}, "sk": {"S": "GCRA"}, "tat": {"N": f"{tat:.6f}"}})
    stack.emulator.clear_request_log()
    started = time.time()
    report = reconcile(stack)
    assert report["urgent"] == 1 and report["users"] == 1, report
    # behind the writes' share: its first request went when the bucket was back above it, not at once
    assert min(e["at"] for e in stack.emulator.request_log) - started >= 1.4
    assert report["stopped_for_budget"] == 1 and report["backlog"] == 1 and report.get("errors", 0) == 0
    store = wiring.store()
    assert store.get_connection("u_jane").last_checked_at > utcnow() - timedelta(minutes=1)
    assert store.get_connection("u_miguel").last_checked_at < utcnow() - CHECK_EVERY


def test_a_crew_with_room_for_two_a_run_is_all_visited_within_half_as_many_runs(stack, monkeypatch):
    from tests.helpers import connect

    users = [f"u_crew{i:02d}" for i in range(CREW)]
    runs = CREW // 2
    for u in users:
        account = stack.emulator.add_calendar_account("google", f"{u}@example.com",
                                                      calendars=[{"name": "Work", "primary": True}])
        connect(stack, stack.browser(u, "org_sunbright"), "google", account)
    for u in users:
        age(u, last_checked_at=timedelta(hours=25))
    monkeypatch.setattr(wiring.reconciler(), "max_requests", 5)  # two visits of one or two requests
    store, visits = wiring.store(), {}
    limiter = wiring.rate_limiter()  # the connects spent the shared bucket: this test is about the cap
    monkeypatch.setattr(limiter, "headroom", lambda: float(limiter.burst))
    for run in range(runs):
        reconcile(stack)
        for u in users:
            checked = store.get_connection(u).last_checked_at
            if checked > utcnow() - timedelta(hours=1):
                visits.setdefault(u, run)
    assert sorted(visits) == users, sorted(set(users) - set(visits))
    assert max(visits.values()) <= runs - 1


def test_a_user_whose_visit_raises_does_not_stop_the_others(stack, jane_cal, miguel_cal, monkeypatch):
    reconciler = wiring.reconciler()
    age("u_jane", last_checked_at=timedelta(hours=30))
    age("u_miguel", last_checked_at=timedelta(hours=26))
    real_check = reconciler.processor.check

    def broken(conn, client, now, **kwargs):
        if conn.user_id == "u_jane":
            raise KeyError("a bug, not Cronofy")
        return real_check(conn, client, now, **kwargs)

    monkeypatch.setattr(reconciler.processor, "check", broken)
    report = reconcile(stack)
    assert report["errors"] == 1 and report["users"] == 2
    jane, miguel = (wiring.store().get_connection(u) for u in ("u_jane", "u_miguel"))
    assert miguel.last_checked_at > utcnow() - timedelta(minutes=1)
    assert "KeyError" in jane.reconcile_error and jane.due_at() > utcnow() + timedelta(minutes=50)
    assert reconcile(stack).get("users", 0) == 0  # the failing user waits an hour, not every run


def test_a_tombstone_older_than_our_write_is_a_loss_and_is_restored(stack, jane_cal):
    assert push(stack, milestone("ms_t", 1, ["u_jane"], in_days(3))) == set()
    emu = stack.emulator
    stack.settle()  # on the calendar before the user can delete it
    emu.delete_event_as_user(jane_cal, event_id=event_id_for("ms_t"))
    lose_notifications(stack)
    ref = wiring.store().get_ref("ms_t", "u_jane")
    # The provider lost it before our last write landed: our write is newer than the tombstone.
    wiring.store().put_ref(ref.model_copy(update={"updated_at": utcnow() + timedelta(minutes=5)}))
    report = reconcile(stack, user_ids=["u_jane"])
    assert report["missing"] == 1 and report.get("reported", 0) == 0
    assert event_id_for("ms_t") in managed_events(stack, jane_cal)
    assert not [m for m in stack.queue_messages("CalendarChangesQueue") if m["type"] == "milestone.removed_on_calendar"]


@pytest.mark.parametrize("state", ["needs_reauth"])
def test_connections_that_need_no_visits_are_not_in_the_due_index(stack, teammate, miguel_cal, state):
    stack.emulator.revoke_account(wiring.store().get_connection("u_miguel").cronofy_sub)
    reconcile(stack, user_ids=["u_miguel"])
    assert wiring.store().get_connection("u_miguel").state.value == state
    assert wiring.store().users_due("9999", 10) == []


def test_a_revoked_authorization_is_found_by_the_reconciler(stack, teammate, miguel_cal):
    stack.emulator.revoke_account(wiring.store().get_connection("u_miguel").cronofy_sub)
    report = reconcile(stack, user_ids=["u_miguel"])
    assert report["needs_reauth"] == 1
    assert teammate["session"].get(stack.url("/v1/calendar/connection")).json()["state"] == "needs_reauth"
