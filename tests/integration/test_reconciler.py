"""The reconciler heals what notifications did not: drift, lost notifications, closed channels, the
busy window, and it keeps to its Cronofy budget."""

from calsync import runtime
from calsync.milestones import event_id_for
from tests.helpers import in_days, iso, managed_events, milestone, push
from tests.schema import assert_valid_message


def reconcile(stack, **event):
    return stack.invoke("ReconcilerFunction", event)


def lose_notifications(stack):
    stack.emulator.wait_for_notifications()
    stack.queue_messages("NotificationsQueue")


def test_a_drifted_calendar_is_back_in_line_after_one_run(stack, jane, jane_cal):
    msgs = [milestone(f"ms_{i}", 1, ["u_jane"], in_days(1 + i)) for i in range(5)]
    assert push(stack, *msgs) == set()
    expected = {e: (ev["start"], ev["end"], ev["summary"]) for e, ev in managed_events(stack, jane_cal).items()}
    emu = stack.emulator
    # Drift by hand, silently (no notification): one event lost, one moved, one retitled,
    # an extra SolarNexus event, and the push channel closed
    emu.drift_event(jane_cal, event_id_for("ms_0"), vanish=True)
    emu.drift_event(jane_cal, event_id_for("ms_1"), start=iso(in_days(20)), end=iso(in_days(20, 17)))
    emu.drift_event(jane_cal, event_id_for("ms_2"), summary="Lunch")
    service = runtime.connection_service()
    conn = service.store.get_connection("u_jane")
    service.user_client(conn).upsert_event(jane_cal, {
        "event_id": "sn-ghost", "summary": "Orphan", "start": {"time": iso(in_days(3)), "tzid": "Etc/UTC"},
        "end": {"time": iso(in_days(3, 16)), "tzid": "Etc/UTC"}})
    emu.close_channel(conn.channel_id)
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


def test_busy_window_rolls_forward_without_notifications(stack, jane, jane_cal):
    stack.emulator.add_external_event(jane_cal, "Roof inspection course", iso(in_days(30, 9)), iso(in_days(30, 12)))
    lose_notifications(stack)
    params = {"user_ids": "u_jane", "from": iso(in_days(29, 0)), "to": iso(in_days(31, 0))}
    assert jane["session"].get(stack.url("/v1/orgs/org_sunbright/busy"), params=params).json()["users"]["u_jane"] == []
    reconcile(stack, user_ids=["u_jane"])
    busy = jane["session"].get(stack.url("/v1/orgs/org_sunbright/busy"), params=params).json()["users"]["u_jane"]
    assert busy == [{"start": iso(in_days(30, 9)), "end": iso(in_days(30, 12))}]


def test_never_pushed_milestones_are_written(stack, jane_cal, monkeypatch):
    engine = runtime.sync_engine()
    monkeypatch.setattr(engine, "_execute", lambda writes, connections, result: {})  # the push "crashed"
    assert push(stack, milestone("ms_lost", 1, ["u_jane"], in_days(2))) == set()
    monkeypatch.undo()
    assert event_id_for("ms_lost") not in managed_events(stack, jane_cal)
    report = reconcile(stack, user_ids=["u_jane"])
    assert report["never_pushed"] == 1
    assert event_id_for("ms_lost") in managed_events(stack, jane_cal)


def test_the_run_keeps_to_its_budget_and_defers_the_rest(stack, jane_cal, miguel_cal, monkeypatch):
    reconciler = runtime.reconciler()
    monkeypatch.setattr(reconciler, "budget", 8)
    stack.emulator.clear_request_log()
    report = reconcile(stack, all_slots=True)
    assert report["users"] == 1 and report["deferred_users"] == 1
    assert report["cronofy_requests"] <= 8
    assert len(stack.emulator.request_log) == report["cronofy_requests"]


def test_every_connected_user_is_in_exactly_one_slot(stack, jane_cal, miguel_cal):
    from calsync.store import RECONCILE_SLOTS
    store = runtime.store()
    found = [u for slot in range(RECONCILE_SLOTS) for u in store.users_in_slot(slot)]
    assert sorted(found) == ["u_jane", "u_miguel"]


def test_a_revoked_authorization_is_found_by_the_reconciler(stack, teammate, miguel_cal):
    stack.emulator.revoke_account(runtime.store().get_connection("u_miguel").cronofy_sub)
    report = reconcile(stack, user_ids=["u_miguel"])
    assert report["needs_reauth"] == 1
    assert teammate["session"].get(stack.url("/v1/calendar/connection")).json()["state"] == "needs_reauth"
