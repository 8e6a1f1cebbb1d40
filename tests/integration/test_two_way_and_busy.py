"""Two-way sync, busy times and broken-sync detection, end to end: emulator (the user's calendar)
-> signed notification -> webhook intake -> notification processor -> core platform / DynamoDB."""

import json
from datetime import timedelta

import requests

from calsync import wiring
from calsync.milestones import event_id_for
from localdev.emulator import sign_body
from tests.helpers import connect, in_days, iso, managed_events, milestone, next_second, push
from tests.schema import assert_valid_message


def calendar_changes(stack, kind=None):
    messages = stack.queue_messages("CalendarChangesQueue")
    for m in messages:
        assert_valid_message(m)
    return [m for m in messages if kind is None or m["type"] == kind]


def test_a_move_on_the_calendar_reaches_solarnexus_once(stack, jane_cal):
    assert push(stack, milestone("ms_survey", 4, ["u_jane"], in_days(2))) == set()
    calendar_changes(stack)  # drop the connection messages
    stack.settle()  # Cronofy applies our write; only then can the user see and move it
    new_start, new_end = in_days(3, hour=17), in_days(3, hour=19)
    stack.emulator.move_event(jane_cal, event_id=event_id_for("ms_survey"), start=iso(new_start), end=iso(new_end))
    stack.drain()
    moves = calendar_changes(stack, "milestone.rescheduled_on_calendar")
    assert len(moves) == 1
    move = moves[0]
    assert (move["milestone_id"], move["user_id"], move["based_on_version"]) == ("ms_survey", "u_jane", 4)
    assert (move["start"], move["end"], move["all_day"]) == (iso(new_start), iso(new_end), False)
    assert move["timezone"] == "America/Los_Angeles"
    ref = wiring.store().get_ref("ms_survey", "u_jane")
    assert (ref.user_moved_start, ref.user_moved_end) == (iso(new_start), iso(new_end))  # the mirror knows it
    # A replayed notification (same body, same signature) changes nothing
    delivered = [n for n in stack.emulator.notifications if '"change"' in n["body"]][-1]
    resp = requests.post(delivered["url"], data=delivered["body"].encode(),
                         headers={"Content-Type": "application/json", "Cronofy-HMAC-SHA256": delivered["signature"]})
    assert resp.status_code < 300
    stack.drain()
    assert calendar_changes(stack) == []
    # A repeated copy of version 4 does not move the event back
    assert push(stack, milestone("ms_survey", 4, ["u_jane"], in_days(2))) == set()
    assert managed_events(stack, jane_cal)[event_id_for("ms_survey")]["start"] == iso(new_start)


def test_our_own_writes_are_never_reported_as_reschedules(stack, jane_cal):
    assert push(stack, milestone("ms_echo", 1, ["u_jane"], in_days(2))) == set()
    assert push(stack, milestone("ms_echo", 2, ["u_jane"], in_days(5))) == set()  # SolarNexus reschedules
    calendar_changes(stack)
    # Any user-side change makes Cronofy notify; the read must not take our own writes for the user's
    # (Cronofy's last_modified returns outside changes only; with it off, the echo rules still hold)
    stack.emulator.add_external_event(jane_cal, "Dentist", iso(in_days(1, 9)), iso(in_days(1, 10)))
    stack.drain()
    assert calendar_changes(stack, "milestone.rescheduled_on_calendar") == []


def test_a_deleted_event_is_reported_and_not_recreated_until_the_milestone_changes(stack, jane_cal):
    assert push(stack, milestone("ms_del", 2, ["u_jane"], in_days(2))) == set()
    calendar_changes(stack)
    stack.settle()  # on the calendar before the user can delete it
    stack.emulator.delete_event_as_user(jane_cal, event_id=event_id_for("ms_del"))
    stack.drain()
    removals = calendar_changes(stack, "milestone.removed_on_calendar")
    assert [(r["milestone_id"], r["based_on_version"]) for r in removals] == [("ms_del", 2)]
    assert push(stack, milestone("ms_del", 2, ["u_jane"], in_days(2))) == set()  # same version again
    assert event_id_for("ms_del") not in managed_events(stack, jane_cal)
    assert push(stack, milestone("ms_del", 3, ["u_jane"], in_days(4))) == set()  # the milestone changes
    assert event_id_for("ms_del") in managed_events(stack, jane_cal)


def test_conflict_solarnexus_change_crossing_a_calendar_reschedule_wins(stack, jane_cal):
    """Written in the README: the core applies a calendar reschedule only while its version still equals
    based_on_version; otherwise SolarNexus wins and its next upsert puts the calendar back."""
    assert push(stack, milestone("ms_c", 1, ["u_jane"], in_days(2))) == set()
    assert push(stack, milestone("ms_d", 1, ["u_jane"], in_days(2, 18))) == set()
    calendar_changes(stack)
    stack.settle()  # both on the calendar before the user drags them
    # (a) The user drags ms_c (based on version 1); the move reaches SolarNexus; meanwhile the office
    # changes ms_c in SolarNexus (version 2), so the core rejects the move and sends version 2 back.
    stack.emulator.move_event(jane_cal, event_id=event_id_for("ms_c"), start=iso(in_days(6)), end=iso(in_days(6, 17)))
    stack.drain()
    assert [m["based_on_version"] for m in calendar_changes(stack, "milestone.rescheduled_on_calendar")] == [1]
    assert push(stack, milestone("ms_c", 2, ["u_jane"], in_days(4))) == set()
    assert managed_events(stack, jane_cal)[event_id_for("ms_c")]["start"] == iso(in_days(4))
    # (b) The user drags ms_d and the office's version 2 is written before the notification is read:
    # the calendar already shows SolarNexus's time, and nothing based on a newer version is reported.
    stack.emulator.move_event(jane_cal, event_id=event_id_for("ms_d"), start=iso(in_days(7)), end=iso(in_days(7, 17)))
    assert push(stack, milestone("ms_d", 2, ["u_jane"], in_days(5))) == set()
    stack.drain()
    assert all(m["based_on_version"] == 1 for m in calendar_changes(stack, "milestone.rescheduled_on_calendar"))
    assert managed_events(stack, jane_cal)[event_id_for("ms_d")]["start"] == iso(in_days(5))


def test_busy_blocks_for_the_scheduler(stack, jane, jane_cal, miguel_cal, teammate):
    assert push(stack, milestone("ms_mine", 1, ["u_miguel"], in_days(2, 10))) == set()
    stack.emulator.add_external_event(miguel_cal, "Dentist", iso(in_days(2, 16)), iso(in_days(2, 17)))
    stack.emulator.add_external_event(miguel_cal, "Focus time", iso(in_days(2, 18)), iso(in_days(2, 20)),
                                      transparency="transparent")
    stack.emulator.add_external_event(miguel_cal, "Dentist follow-up", iso(in_days(2, 17)), iso(in_days(2, 18)))
    stack.drain()
    stack.emulator.clear_request_log()
    params = {"user_ids": "u_miguel,u_jane,u_stranger", "from": iso(in_days(0, 0)), "to": iso(in_days(14, 0))}
    resp = jane["session"].get(stack.url("/v1/orgs/org_sunbright/busy"), params=params)
    assert resp.status_code == 200, resp.text
    users = resp.json()["users"]
    # The dentist and its follow-up merge into one block; focus time (Show as Free) and the
    # SolarNexus event are not busy; nothing but start and end is returned
    assert users["u_miguel"] == [{"start": iso(in_days(2, 16)), "end": iso(in_days(2, 18))}]
    assert users["u_jane"] == [] and users["u_stranger"] == []
    assert "Dentist" not in resp.text and "Focus" not in resp.text
    assert stack.emulator.request_log == []  # answered from DynamoDB alone
    outsider = stack.browser("u_eve", "org_other")
    assert outsider.get(stack.url("/v1/orgs/org_sunbright/busy"), params=params).status_code == 403
    bad = dict(params, to=params["from"])
    assert jane["session"].get(stack.url("/v1/orgs/org_sunbright/busy"), params=bad).status_code == 422
    assert jane["session"].get(stack.url("/v1/orgs/org_sunbright/busy"),
                               params={"user_ids": "u_miguel"}).status_code == 422


def test_profile_disconnected_needs_reauth_and_reconnecting_restores_without_duplicates(stack, teammate,
                                                                                         miguel_cal):
    assert push(stack, *[milestone(f"ms_{i}", 1, ["u_miguel"], in_days(1 + i)) for i in range(3)]) == set()
    calendar_changes(stack)
    stack.emulator.disconnect_profile(teammate["account"]["profile_id"])
    stack.drain()
    status = teammate["session"].get(stack.url("/v1/calendar/connection")).json()
    assert status["state"] == "needs_reauth" and status["last_error"] == "profile_disconnected"
    changed = calendar_changes(stack, "calendar.connection_changed")
    assert [(m["state"], m["reason"]) for m in changed] == [("needs_reauth", "profile_disconnected")]
    # Changes while broken are mirrored, not lost
    assert push(stack, milestone("ms_while_broken", 1, ["u_miguel"], in_days(8))) == set()
    # The user reconnects (relink), and everything is there exactly once
    stack.emulator.reconnect_profile(teammate["account"]["profile_id"])
    cal = connect(stack, teammate["session"], "microsoft", teammate["account"])
    assert cal == miguel_cal
    events = list(managed_events(stack, cal).values())
    assert sorted(e["event_id"] for e in events) == sorted(
        [event_id_for(f"ms_{i}") for i in range(3)] + [event_id_for("ms_while_broken")])


def test_a_revoked_authorization_is_detected_and_shown(stack, teammate, miguel_cal):
    sub = wiring.store().get_connection("u_miguel").cronofy_sub
    stack.emulator.revoke_account(sub)
    assert push(stack, milestone("ms_x", 1, ["u_miguel"])) == set()  # not retried forever
    status = teammate["session"].get(stack.url("/v1/calendar/connection")).json()
    assert status["state"] == "needs_reauth" and status["last_error"] == "authorization_revoked"


def test_appointments_already_on_the_calendar_are_busy_from_the_start(stack, jane, teammate):
    miguel_account = teammate["account"]
    calendar = next(c["calendar_id"] for c in miguel_account["calendars"] if c["calendar_name"] == "Calendar")
    stack.emulator.add_external_event(calendar, "Dentist", iso(in_days(3, 16)), iso(in_days(3, 17)))
    stack.emulator.wait_for_notifications()  # (no channel yet: nobody hears about it)
    connect(stack, teammate["session"], "microsoft", miguel_account)
    params = {"user_ids": "u_miguel", "from": iso(in_days(0, 0)), "to": iso(in_days(14, 0))}
    busy = jane["session"].get(stack.url("/v1/orgs/org_sunbright/busy"), params=params).json()["users"]["u_miguel"]
    assert busy == [{"start": iso(in_days(3, 16)), "end": iso(in_days(3, 17))}]


def test_an_applied_calendar_move_is_not_written_back(stack, jane_cal):
    assert push(stack, milestone("ms_echo2", 1, ["u_jane"], in_days(2))) == set()
    stack.emulator.advance_clock(2)
    stack.emulator.move_event(jane_cal, event_id=event_id_for("ms_echo2"), start=iso(in_days(5)),
                              end=iso(in_days(5, 17)))
    stack.drain()
    [move] = calendar_changes(stack, "milestone.rescheduled_on_calendar")
    # The core platform applies it: version 2 carries the user's times
    stack.emulator.clear_request_log()
    applied = milestone("ms_echo2", 2, ["u_jane"], move["start"], end=move["end"])
    assert push(stack, applied) == set()
    assert stack.emulator.count_requests(path_prefix="/v1/batch") == 0
    assert wiring.store().get_ref("ms_echo2", "u_jane").version == 2
    # ...and a later change in SolarNexus is written as usual
    assert push(stack, milestone("ms_echo2", 3, ["u_jane"], in_days(9))) == set()
    assert managed_events(stack, jane_cal)[event_id_for("ms_echo2")]["start"] == iso(in_days(9))


def test_a_newer_solarnexus_version_puts_a_rejected_move_back(stack, jane_cal):
    assert push(stack, milestone("ms_back", 1, ["u_jane"], in_days(2))) == set()
    stack.emulator.advance_clock(2)
    stack.emulator.move_event(jane_cal, event_id=event_id_for("ms_back"), start=iso(in_days(6)),
                              end=iso(in_days(6, 17)))
    stack.drain()
    assert len(calendar_changes(stack, "milestone.rescheduled_on_calendar")) == 1
    # The core rejects the move (its version moved on) and publishes version 2, same time as before
    assert push(stack, milestone("ms_back", 2, ["u_jane"], in_days(2))) == set()
    assert managed_events(stack, jane_cal)[event_id_for("ms_back")]["start"] == iso(in_days(2))


# ---- what a realistic Cronofy does (issue 12): asynchronous writes, retried and duplicated pushes,
# secret rotation -------------------------------------------------------------------------------


def test_a_move_read_before_our_newer_write_lands_is_not_reported_on_the_newer_version(stack, jane_cal):
    """The user drags the event (based on version 1); the office's version 2 is written, and Cronofy
    has accepted but not yet applied it when the notification is read. The read shows the user's
    time, but the ref already says version 2: reporting the move "based on version 2" would make the
    core accept a move made before its own change. SolarNexus wins, as when the write lands first."""
    assert push(stack, milestone("ms_e", 1, ["u_jane"], in_days(2))) == set()
    stack.settle()
    calendar_changes(stack)
    stack.emulator.configure(write_delay=60)  # version 2 stays accepted-but-not-applied
    stack.emulator.move_event(jane_cal, event_id=event_id_for("ms_e"), start=iso(in_days(6)), end=iso(in_days(6, 17)))
    next_second()
    assert push(stack, milestone("ms_e", 2, ["u_jane"], in_days(4))) == set()
    assert stack.emulator.pending_writes == 1
    assert stack.emulator.wait_for_notifications()  # the push reaches the intake; the write is still pending
    stack.pump()
    stack.pump()
    assert calendar_changes(stack, "milestone.rescheduled_on_calendar") == []
    stack.emulator.configure(write_delay=1.0)
    stack.drain()
    assert managed_events(stack, jane_cal)[event_id_for("ms_e")]["start"] == iso(in_days(4))
    assert calendar_changes(stack, "milestone.rescheduled_on_calendar") == []


def reads_for_one_move(stack, calendar_id, event_id, day):
    stack.emulator.clear_request_log()
    stack.emulator.clear_notifications()
    stack.emulator.move_event(calendar_id, event_id=event_id, start=iso(in_days(day)), end=iso(in_days(day, 17)))
    stack.drain()
    changes = [n for n in stack.emulator.notifications if n["type"] == "change"]
    return len(changes), stack.emulator.count_requests(path_prefix="/v1/")


def test_a_duplicated_push_costs_no_more_cronofy_requests_than_one(stack, jane_cal):
    assert push(stack, milestone("ms_a", 1, ["u_jane"], in_days(2)), milestone("ms_b", 1, ["u_jane"], in_days(3))) \
        == set()
    stack.settle()
    stack.drain()
    stack.emulator.configure(push_duplicate_rate=0.0, push_reorder_rate=0.0)
    once, requests_once = reads_for_one_move(stack, jane_cal, event_id_for("ms_a"), 8)
    stack.emulator.configure(push_duplicate_rate=1.0)  # every push arrives twice
    twice, requests_twice = reads_for_one_move(stack, jane_cal, event_id_for("ms_b"), 9)
    assert (once, twice) == (1, 2)
    assert requests_once >= 1
    assert requests_twice == requests_once
    moves = calendar_changes(stack, "milestone.rescheduled_on_calendar")
    assert sorted(m["milestone_id"] for m in moves) == ["ms_a", "ms_b"]  # each move reported once


def test_a_failing_webhook_is_retried_with_backoff_and_the_move_still_arrives(stack, jane_cal):
    assert push(stack, milestone("ms_r", 1, ["u_jane"], in_days(2))) == set()
    stack.settle()
    stack.drain()
    calendar_changes(stack)
    stack.emulator.configure(push_duplicate_rate=0.0, push_reorder_rate=0.0)
    stack.emulator.clear_notifications()
    stack.fail_webhooks(2)  # API Gateway answers 503 twice
    stack.emulator.move_event(jane_cal, event_id=event_id_for("ms_r"), start=iso(in_days(5)), end=iso(in_days(5, 17)))
    stack.drain()
    attempts = [(n["attempt"], n["status"]) for n in stack.emulator.notifications if n["type"] == "change"]
    assert attempts == [(1, 503), (2, 503), (3, 202)]
    moves = calendar_changes(stack, "milestone.rescheduled_on_calendar")
    assert [m["milestone_id"] for m in moves] == ["ms_r"]


def test_a_notification_signed_during_a_secret_rotation_is_accepted(stack, jane_cal):
    stack.settle()
    stack.drain()
    emu = stack.emulator
    emu.configure(push_duplicate_rate=0.0, push_reorder_rate=0.0)

    def one_change(summary, hour):
        emu.clear_notifications()
        emu.clear_request_log()
        emu.add_external_event(jane_cal, summary, iso(in_days(1, hour)), iso(in_days(1, hour + 1)))
        stack.drain()
        (delivered,) = [n for n in emu.notifications if n["type"] == "change"]
        assert emu.count_requests(method="GET", path_prefix="/v1/events") >= 1  # it was processed
        return delivered

    # 1. Cronofy has a second active secret; we still only know the old one
    emu.begin_secret_rotation("rotated-client-secret")
    delivered = one_change("Dentist", 8)
    assert len(delivered["signature"].split(",")) == 2
    assert delivered["status"] == 202
    # 2. we switch to the new secret (token refreshes use it too) while Cronofy still signs with both
    stack.use_client_secret("rotated-client-secret")
    delivered = one_change("Gym", 10)
    assert len(delivered["signature"].split(",")) == 2 and delivered["status"] == 202
    # 3. the old secret is retired
    emu.complete_secret_rotation()
    delivered = one_change("Lunch", 12)
    assert len(delivered["signature"].split(",")) == 1 and delivered["status"] == 202
    # a notification signed only with the retired secret is refused
    stale = json.dumps({"notification": {"type": "change", "changes_since": iso(in_days(0))},
                        "channel": {"channel_id": wiring.store().get_connection("u_jane").channel_id}}).encode()
    resp = requests.post(delivered["url"], data=stale, headers={
        "Content-Type": "application/json", "Cronofy-HMAC-SHA256": sign_body("local-cronofy-client-secret", stale)})
    assert resp.status_code == 401


def test_the_profile_shows_the_last_sync_not_the_connect(stack, jane, jane_cal):
    """A read of the calendar after the backfill (here a notification's, which is also the day's check)
    moves `last_sync_at` on the status route, as on the org's health view."""
    status = jane["session"].get(stack.url("/v1/calendar/connection")).json()
    after_backfill = status["last_sync_at"]
    next_second()  # times are whole seconds on the wire
    stack.emulator.add_external_event(jane_cal, "Dentist", iso(in_days(1, 9)), iso(in_days(1, 10)))
    stack.drain()
    status = jane["session"].get(stack.url("/v1/calendar/connection")).json()
    assert status["last_sync_at"] > after_backfill
    admin = stack.browser("u_admin", "org_sunbright", roles=["admin"])
    health = admin.get(stack.url("/v1/orgs/org_sunbright/calendar-health")).json()
    row = next(m for m in health["members"] if m["user_id"] == "u_jane")
    assert row["last_sync_at"] == status["last_sync_at"]


def test_times_on_the_wire_are_iso_with_a_zone_in_a_sane_range(stack, jane):
    """An epoch number, a time without a zone, or a year datetime cannot widen by a day is a clear 422,
    never a 500 or an answer about another instant."""
    busy = stack.url("/v1/orgs/org_sunbright/busy")
    for start, end in (("0", "1000"), ("1764547200000", "1764633600000"),
                       ("2026-12-01T00:00:00", "2026-12-02T00:00:00"),
                       ("0001-01-01T00:00:00Z", "0001-01-05T00:00:00Z"),
                       ("9999-12-30T00:00:00Z", "9999-12-31T23:00:00Z")):
        resp = jane["session"].get(busy, params={"user_ids": "u_jane", "from": start, "to": end})
        assert resp.status_code == 422, (start, resp.text)
        assert resp.json()["error"]["code"] == "invalid_request"
    ok = jane["session"].get(busy, params={"user_ids": "u_jane", "from": "2026-12-01T00:00:00Z",
                                           "to": "2026-12-02T00:00:00+01:00"})
    assert ok.status_code == 200 and ok.json()["users"] == {"u_jane": []}
    far = {"user_ids": ["u_jane"], "duration_minutes": 60, "from": "9999-12-01T00:00:00Z", "to": "9999-12-31T00:00:00Z"}
    resp = jane["session"].post(stack.url("/v1/orgs/org_sunbright/availability"), json=far)
    assert resp.status_code == 422 and "2000" in resp.json()["error"]["message"]


def _moved(stack, cal, milestone_id, start, end):
    stack.emulator.move_event(cal, event_id=event_id_for(milestone_id), start=iso(start), end=iso(end))
    stack.drain()
    moves = calendar_changes(stack, "milestone.rescheduled_on_calendar")
    return [m for m in moves if m["milestone_id"] == milestone_id]


def test_moving_an_event_back_to_its_first_time_is_reported_too(stack, jane_cal):
    first = in_days(2, hour=15)
    assert push(stack, milestone("ms_back", 1, ["u_jane"], first)) == set()
    stack.settle()
    there = _moved(stack, jane_cal, "ms_back", in_days(2, hour=19), in_days(2, hour=21))
    assert [m["start"] for m in there] == [iso(in_days(2, hour=19))]
    back = _moved(stack, jane_cal, "ms_back", first, first + timedelta(hours=2))
    assert [(m["start"], m["based_on_version"]) for m in back] == [(iso(first), 1)]


def test_a_move_read_after_a_change_that_wrote_nothing_is_still_reported(stack, jane_cal, miguel_cal):
    """v2 adds an assignee and leaves Jane's event as it is: recording it must not look like a newer
    write of ours that her earlier move lost to."""
    start = in_days(2, hour=15)
    assert push(stack, milestone("ms_race", 1, ["u_jane"], start)) == set()
    stack.settle()
    moved_to = in_days(2, hour=19)
    stack.emulator.move_event(jane_cal, event_id=event_id_for("ms_race"), start=iso(moved_to),
                              end=iso(moved_to + timedelta(hours=2)))
    next_second()  # Cronofy's `updated` has whole seconds
    assert push(stack, milestone("ms_race", 2, ["u_jane", "u_miguel"], start)) == set()
    stack.drain()
    moves = [m for m in calendar_changes(stack, "milestone.rescheduled_on_calendar") if m["milestone_id"] == "ms_race"]
    assert [(m["start"], m["based_on_version"]) for m in moves] == [(iso(moved_to), 2)]


def test_a_move_is_not_lost_when_its_message_cannot_be_sent_the_first_time(stack, jane_cal, monkeypatch):
    from calsync.publisher import Publisher

    assert push(stack, milestone("ms_pub", 1, ["u_jane"], in_days(2, hour=15))) == set()
    stack.settle()
    real, calls = Publisher.calendar_change, []

    def flaky(self, message):
        calls.append(message)
        if len(calls) == 1:
            raise RuntimeError("SQS is unavailable")
        return real(self, message)

    monkeypatch.setattr(Publisher, "calendar_change", flaky)
    moves = _moved(stack, jane_cal, "ms_pub", in_days(2, hour=19), in_days(2, hour=21))
    assert len(calls) >= 2 and len(moves) == 1
    assert moves[0]["message_id"] == calls[0].message_id  # the retry is the same message


def test_a_move_to_year_9999_is_reported_as_a_removal_the_core_platform_can_apply(stack, jane_cal):
    """Issue 20, finding 9: a reschedule to 9999 made the core's upsert fail our own 2000-2099 check."""
    assert push(stack, milestone("ms_far", 3, ["u_jane"], in_days(2))) == set()
    calendar_changes(stack)
    stack.settle()
    stack.emulator.move_event(jane_cal, event_id=event_id_for("ms_far"),
                              start="9999-12-30T09:00:00Z", end="9999-12-30T11:00:00Z")
    stack.drain()
    said = calendar_changes(stack)
    assert [(m["type"], m["milestone_id"], m["based_on_version"]) for m in said] == [
        ("milestone.removed_on_calendar", "ms_far", 3)]
    assert stack.queue_messages("NotificationsDLQ") == []
    # As after a deletion: the event is not kept on the calendar (in 9999), nothing more is said, and
    # the milestone's next change writes it again
    report = stack.invoke("ReconcilerFunction", {"user_ids": ["u_jane"]})
    assert report.get("errors", 0) == 0 and calendar_changes(stack) == []
    stack.settle()
    assert event_id_for("ms_far") not in managed_events(stack, jane_cal)
    assert push(stack, milestone("ms_far", 4, ["u_jane"], in_days(3))) == set()
    assert managed_events(stack, jane_cal)[event_id_for("ms_far")]["start"] == iso(in_days(3))
