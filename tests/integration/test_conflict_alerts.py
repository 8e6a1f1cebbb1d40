"""Conflict alerts (issue 23) end to end: the user's calendar (the Cronofy emulator) -> signed notification
-> webhook intake -> notification processor, and milestone messages -> milestone push, on moto; what
reaches the core platform's CalendarChangesQueue, what the admins' health route shows, and the Cronofy
requests it takes (none of its own)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import requests

from tests.helpers import deleted, in_days, iso, milestone, next_second, push
from tests.schema import assert_valid_message


def said(stack) -> list[dict]:
    """Every conflict message since the last call (the queue is read and emptied)."""
    out = []
    for message in stack.queue_messages("CalendarChangesQueue"):
        assert_valid_message(message)
        if message["type"].startswith("calendar.conflict_"):
            out.append(message)
    return out


def requests_by_kind(stack) -> Counter:
    return Counter(f"{e['method']} {e['path'].split('/')[2] if e['path'].count('/') > 1 else e['path']}"
                   for e in stack.emulator.request_log)


def replay_last_change_notification(stack) -> None:
    delivered = [n for n in stack.emulator.notifications if '"change"' in n["body"]][-1]
    resp = requests.post(delivered["url"], data=delivered["body"].encode(),
                         headers={"Content-Type": "application/json", "Cronofy-HMAC-SHA256": delivered["signature"]})
    assert resp.status_code < 300
    stack.drain()


def test_jane_books_the_dentist_during_an_install_told_once_with_no_cronofy_request_of_its_own(stack, jane_cal):
    install = in_days(3, 15)
    assert push(stack, milestone("ms_install", 7, ["u_jane"], install, hours=4)) == set()
    stack.drain()
    said(stack)
    stack.emulator.clear_request_log()
    # Jane's changes come seconds apart, as a person's do. Cronofy's `changes_since` has whole seconds, so
    # changes in one second send equal notifications; the intake lets at most 3 copies of one through (a
    # replay's cost is bounded), and a fast stack once fitted five of this test's changes in one second.
    next_second()
    stack.emulator.add_external_event(jane_cal, "Focus", iso(in_days(3, 16)), iso(in_days(3, 17)),
                                      transparency="transparent")
    stack.drain()
    assert said(stack) == []  # "Show as Free" never collides
    reads_without_conflict = requests_by_kind(stack)
    stack.emulator.clear_request_log()
    next_second()
    dentist = stack.emulator.add_external_event(jane_cal, "Dentist", iso(in_days(3, 16)), iso(in_days(3, 17)),
                                                status="tentative")
    stack.drain()
    messages = said(stack)
    assert [(m["type"], m["milestone_id"], m["user_id"], m["milestone_version"]) for m in messages] == [
        ("calendar.conflict_detected", "ms_install", "u_jane", 7)]
    assert messages[0]["overlap"] == {"start": iso(in_days(3, 16)), "end": iso(in_days(3, 17))}
    assert "Dentist" not in str(messages)
    # The same requests as a change that collides with nothing: the notification's own read, no more
    assert requests_by_kind(stack) == reads_without_conflict
    # Duplicates (Cronofy's retry of the same notification) and a changed overlap send nothing new
    replay_last_change_notification(stack)
    next_second()
    stack.emulator.move_event(jane_cal, event_uid=dentist, start=iso(in_days(3, 17)), end=iso(in_days(3, 18)))
    stack.drain()
    assert said(stack) == []
    # The admins see it on the health route
    admin = stack.browser("u_boss", "org_sunbright", roles=["admin"])
    health = admin.get(stack.url("/v1/orgs/org_sunbright/calendar-health")).json()
    jane = next(m for m in health["members"] if m["user_id"] == "u_jane")
    assert [(c["milestone_id"], c["conflict_id"], c["overlap"]) for c in jane["conflicts"]] == [
        ("ms_install", messages[0]["conflict_id"], {"start": iso(in_days(3, 17)), "end": iso(in_days(3, 18))})]
    assert health["summary"]["conflicts"] == 1
    # The dentist moves off the install: resolved, once
    next_second()
    stack.emulator.move_event(jane_cal, event_uid=dentist, start=iso(in_days(4, 16)), end=iso(in_days(4, 17)))
    stack.drain()
    replay_last_change_notification(stack)
    assert [(m["type"], m["conflict_id"], m["why"]) for m in said(stack)] == [
        ("calendar.conflict_resolved", messages[0]["conflict_id"], "busy_time_gone")]
    health = admin.get(stack.url("/v1/orgs/org_sunbright/calendar-health")).json()
    assert health["summary"]["conflicts"] == 0


def test_a_milestone_placed_on_known_busy_time_is_told_at_once_and_reordered_versions_change_nothing(
        stack, jane_cal):
    stack.emulator.add_external_event(jane_cal, "School run", iso(in_days(2, 14)), iso(in_days(2, 16)))
    stack.drain()
    said(stack)
    first = milestone("ms_survey", 2, ["u_jane"], in_days(2, 15))
    assert push(stack, first) == set()
    detected = said(stack)
    assert [(m["type"], m["milestone_version"]) for m in detected] == [("calendar.conflict_detected", 2)]
    # version 3 still on it, then version 2 again (late) and version 3 twice: nothing more is told
    newer = milestone("ms_survey", 3, ["u_jane"], in_days(2, 14))
    assert push(stack, newer, first) == set()
    assert push(stack, newer) == set()
    assert said(stack) == []
    # the milestone moves away
    assert push(stack, milestone("ms_survey", 4, ["u_jane"], in_days(5, 15))) == set()
    assert [(m["why"], m["conflict_id"]) for m in said(stack)] == [("milestone_moved", detected[0]["conflict_id"])]


def test_every_way_a_conflict_ends_is_told_with_why(stack, jane_cal, miguel_cal):
    for cal in (jane_cal, miguel_cal):
        stack.emulator.add_external_event(cal, "Dentist", iso(in_days(3, 9)), iso(in_days(3, 12)))
    stack.drain()
    said(stack)
    assert push(stack, milestone("ms_a", 1, ["u_jane", "u_miguel"], in_days(3, 10)),
                milestone("ms_b", 1, ["u_jane"], in_days(3, 10)),
                milestone("ms_c", 1, ["u_jane"], in_days(3, 10))) == set()
    opened = {(m["milestone_id"], m["user_id"]): m["conflict_id"] for m in said(stack)}
    assert set(opened) == {("ms_a", "u_jane"), ("ms_a", "u_miguel"), ("ms_b", "u_jane"), ("ms_c", "u_jane")}
    assert push(stack, milestone("ms_a", 2, ["u_miguel"], in_days(3, 10)),  # Jane unassigned
                milestone("ms_b", 2, ["u_jane"], in_days(3, 10), status="unscheduled"),
                deleted("ms_c", 2)) == set()
    resp = stack.browser("u_miguel", "org_sunbright").delete(stack.url("/v1/calendar/connection"))
    assert resp.status_code == 202
    stack.drain()
    resolved = {(m["milestone_id"], m["user_id"]): (m["conflict_id"], m["why"]) for m in said(stack)}
    assert resolved == {("ms_a", "u_jane"): (opened[("ms_a", "u_jane")], "unassigned"),
                        ("ms_b", "u_jane"): (opened[("ms_b", "u_jane")], "milestone_unscheduled"),
                        ("ms_c", "u_jane"): (opened[("ms_c", "u_jane")], "milestone_unscheduled"),
                        ("ms_a", "u_miguel"): (opened[("ms_a", "u_miguel")], "disconnected")}


def test_the_backfill_and_the_reconcilers_check_detect_what_no_notification_told(stack, jane):
    from calsync import wiring
    from calsync.models import utcnow
    from tests.helpers import cal_id, connect

    # Before Jane connects: the install is assigned to her, her calendar already has a dentist appointment
    installs = cal_id(jane["work"], "Installs")
    stack.emulator.add_external_event(installs, "Dentist", iso(in_days(3, 16)), iso(in_days(3, 17)))
    assert push(stack, milestone("ms_install", 1, ["u_jane"], in_days(3, 15), hours=4)) == set()
    connect(stack, jane["session"], "google", jane["work"], "Installs")
    found = said(stack)
    assert [(m["type"], m["milestone_id"]) for m in found] == [("calendar.conflict_detected", "ms_install")]
    # A notification is lost; the day's check (here with the weekly busy rebuild due) finds it
    assert push(stack, milestone("ms_survey", 1, ["u_jane"], in_days(5, 15))) == set()
    stack.emulator.add_external_event(installs, "School play", iso(in_days(5, 16)), iso(in_days(5, 18)))
    stack.emulator.wait_for_notifications()
    stack.queue_messages("NotificationsQueue")  # lost
    assert said(stack) == []
    now = utcnow()
    wiring.store().update_connection("u_jane", lambda c: c.model_copy(update={
        "busy_rebuilt_at": now - timedelta(days=8), "last_checked_at": now - timedelta(days=2)}))
    stack.invoke("ReconcilerFunction", {"user_ids": ["u_jane"]})
    assert [(m["type"], m["milestone_id"]) for m in said(stack)] == [("calendar.conflict_detected", "ms_survey")]
