"""Connect, choose a calendar, status, org list, disconnect and deactivation, through the router,
the real handlers, moto and the Cronofy emulator."""

import base64
import json
from datetime import UTC, datetime

import pytest
import requests
from botocore.exceptions import ClientError

from calsync import wiring
from localdev import browser


def now_z():
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cal_id(account, name):
    return next(c["calendar_id"] for c in account["calendars"] if c["calendar_name"] == name)


def connection(stack, session):
    resp = session.get(stack.url("/v1/calendar/connection"))
    assert resp.status_code == 200, resp.text
    return resp.json()


def stored_kinds(stack):
    return sorted((i["pk"]["S"].split("#")[0], i["sk"]["S"]) for i in stack.raw_items())


def connect_jane(stack, jane, calendar="Installs"):
    result = browser.connect(jane["session"], stack.base_url, "google", jane["work"]["profile_id"])
    assert result["calendar_sync"] == "choose_calendar", result
    resp = jane["session"].put(stack.url("/v1/calendar/connection"),
                               json={"calendar_id": cal_id(jane["work"], calendar)})
    assert resp.status_code == 200, resp.text
    stack.drain()  # the backfill workflow runs
    return resp.json()


def test_jane_picks_a_calendar_and_her_status_shows_it(stack, jane):
    # Given Jane's work account with two writable calendars and a read-only one
    result = browser.connect(jane["session"], stack.base_url, "google", jane["work"]["profile_id"])
    # Then she must choose, and her status says so
    assert result["calendar_sync"] == "choose_calendar"
    status = connection(stack, jane["session"])
    assert status["state"] == "pending_calendar"
    assert status["profile_name"] == "jane.smith@example.com"
    assert status["calendar"] is None
    # Only the writable calendars of the account she authorized are offered
    calendars = jane["session"].get(stack.url("/v1/calendar/calendars")).json()["calendars"]
    assert sorted(c["name"] for c in calendars) == ["Installs", "jane.smith@example.com"]
    # When she picks Installs
    resp = jane["session"].put(stack.url("/v1/calendar/connection"),
                               json={"calendar_id": cal_id(jane["work"], "Installs")})
    assert resp.status_code == 200
    assert resp.json()["state"] == "syncing"  # while the backfill fills the calendar
    stack.drain()
    # Then her profile shows it
    status = connection(stack, jane["session"])
    assert status["state"] == "connected"
    assert status["calendar"] == {"id": cal_id(jane["work"], "Installs"), "name": "Installs"}
    assert status["provider"] == "google"
    # And a push channel exists for her account, pointing at our webhook
    channels = stack.emulator.channels()
    assert len(channels) == 1 and channels[0]["callback_url"].startswith(stack.url("/v1/webhooks/cronofy/"))
    changes = stack.queue_messages("CalendarChangesQueue")
    assert [m["state"] for m in changes] == ["pending_calendar", "syncing", "connected"]
    assert status["backfill"]["status"] == "succeeded"


def test_read_only_or_foreign_calendar_cannot_be_selected(stack, jane):
    browser.connect(jane["session"], stack.base_url, "google", jane["work"]["profile_id"])
    for calendar_id in (cal_id(jane["work"], "US Holidays"), cal_id(jane["personal"], "Personal"), "cal_nope"):
        resp = jane["session"].put(stack.url("/v1/calendar/connection"), json={"calendar_id": calendar_id})
        assert resp.status_code == 422
        assert resp.json()["error"]["code"] == "calendar_not_writable"
    resp = jane["session"].put(stack.url("/v1/calendar/connection"), json={})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_request"
    assert connection(stack, jane["session"])["state"] == "pending_calendar"


def test_single_writable_calendar_is_selected_automatically(stack, teammate):
    result = browser.connect(teammate["session"], stack.base_url, "microsoft", teammate["account"]["profile_id"])
    assert result["calendar_sync"] == "connected"
    stack.drain()
    status = connection(stack, teammate["session"])
    assert status["state"] == "connected"
    assert status["calendar"]["name"] == "Calendar"


def test_org_list_shows_everyone_connected_with_details_for_admins(stack, jane, teammate):
    connect_jane(stack, jane)
    browser.connect(teammate["session"], stack.base_url, "microsoft", teammate["account"]["profile_id"])
    member = teammate["session"].get(stack.url("/v1/orgs/org_sunbright/calendar-connections")).json()
    rows = {r["user_id"]: r for r in member["connections"]}
    assert set(rows) == {"u_jane", "u_miguel"}
    assert all(r["sync"] for r in rows.values())
    assert "calendar_name" not in rows["u_jane"]  # a teammate sees the sync icon, not Jane's calendar
    assert rows["u_miguel"]["calendar_name"] == "Calendar"  # but sees his own
    admin = stack.browser("u_boss", "org_sunbright", roles=["admin", "member"])
    rows = {r["user_id"]: r for r in admin.get(stack.url("/v1/orgs/org_sunbright/calendar-connections")).json()[
        "connections"]}
    assert rows["u_jane"]["calendar_name"] == "Installs"


def test_other_org_is_forbidden_and_users_reach_only_their_own_connection(stack, jane, teammate):
    connect_jane(stack, jane)
    outsider = stack.browser("u_eve", "org_other", roles=["admin"])
    resp = outsider.get(stack.url("/v1/orgs/org_sunbright/calendar-connections"))
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden"
    # Eve's own connection route shows Eve's (absent) connection, never Jane's
    assert connection(stack, outsider) == {"state": "not_connected"}
    assert outsider.get(stack.url("/v1/calendar/calendars")).status_code == 404
    # Eve disconnecting touches nothing of Jane's
    assert outsider.delete(stack.url("/v1/calendar/connection")).json() == {"state": "not_connected"}
    stack.drain()
    assert connection(stack, jane["session"])["state"] == "connected"
    # No session, no access
    assert requests.get(stack.url("/v1/calendar/connection")).status_code == 401
    assert requests.get(stack.url("/v1/calendar/connection"),
                        headers={"Authorization": "Bearer forged.token.value"}).status_code == 401


def _managed_event(stack, user_id, calendar_id, event_id="ms_probe"):
    """Write one SolarNexus event with the user's own stored tokens (stands in for milestone push)."""
    service = wiring.connection_service()
    client = service.user_client(service.store.get_connection(user_id))
    client.upsert_event(calendar_id, {
        "event_id": event_id, "summary": "Site Survey - Ana Ruiz",
        "start": {"time": "2026-12-01T15:00:00Z", "tzid": "America/Los_Angeles"},
        "end": {"time": "2026-12-01T17:00:00Z", "tzid": "America/Los_Angeles"},
    })


def assert_cleaned(stack, user_id, sub, calendar_id):
    assert not [i for i in stack.raw_items() if i["pk"]["S"] == f"USER#{user_id}"]  # tokens and connection gone
    state = stack.emulator.account_state(sub)
    assert state["revoked"] is True
    assert state["channels"] == []
    assert [e for e in stack.emulator.events(calendar_id) if e["managed"]] == []


def test_jane_disconnects_and_everything_is_removed(stack, jane):
    connect_jane(stack, jane)
    installs = cal_id(jane["work"], "Installs")
    _managed_event(stack, "u_jane", installs, "ms_1")
    _managed_event(stack, "u_jane", installs, "ms_2")
    sub = wiring.connection_service().store.get_connection("u_jane").cronofy_sub
    stack.emulator.clear_request_log()
    # When she disconnects
    resp = jane["session"].delete(stack.url("/v1/calendar/connection"))
    assert resp.status_code == 202 and resp.json() == {"state": "disconnecting"}
    assert connection(stack, jane["session"])["state"] == "disconnecting"
    stack.drain()
    # Then her events, channel, authorization and tokens are gone
    assert connection(stack, jane["session"]) == {"state": "not_connected"}
    assert_cleaned(stack, "u_jane", sub, installs)
    # with one bulk delete, whatever the number of events
    assert stack.emulator.count_requests(method="DELETE", path_prefix="/v1/events") == 1
    assert stack.emulator.count_requests(method="DELETE", path_prefix="/v1/calendars") == 0
    changes = [m for m in stack.queue_messages("CalendarChangesQueue") if m["user_id"] == "u_jane"]
    assert changes[-1]["state"] == "not_connected" and changes[-1]["reason"] == "disconnected"
    # Disconnecting again changes nothing
    stack.emulator.clear_request_log()
    assert jane["session"].delete(stack.url("/v1/calendar/connection")).json() == {"state": "not_connected"}
    stack.drain()
    assert stack.emulator.request_log == []


def test_deactivation_through_the_user_queue_is_idempotent(stack, teammate):
    browser.connect(teammate["session"], stack.base_url, "microsoft", teammate["account"]["profile_id"])
    calendar = cal_id(teammate["account"], "Calendar")
    _managed_event(stack, "u_miguel", calendar)
    sub = wiring.connection_service().store.get_connection("u_miguel").cronofy_sub
    message = {"type": "user.deactivated", "message_id": "m-1", "occurred_at": now_z(),
               "org_id": "org_sunbright", "user_id": "u_miguel"}
    stack.send("UserEventsQueue", message)
    stack.drain()
    assert_cleaned(stack, "u_miguel", sub, calendar)
    # The same message again (at-least-once delivery): no Cronofy call, no failure
    stack.emulator.clear_request_log()
    stack.send("UserEventsQueue", message)
    stack.drain()
    assert stack.emulator.request_log == []
    assert stack.queue_messages("UserEventsDLQ") == []
    changes = [m for m in stack.queue_messages("CalendarChangesQueue") if m["state"] == "not_connected"]
    assert len(changes) == 1 and changes[0]["reason"] == "user_deactivated"


@pytest.mark.parametrize("leave", ["deactivated", "disconnect"])
def test_a_user_whose_profile_lost_its_provider_link_still_leaves(stack, teammate, leave):
    """Cronofy answers 423 to deleting events of a disconnected profile: the events cannot be removed,
    but the user still leaves (the help article's fix for a sync that stopped: disconnect, reconnect)."""
    browser.connect(teammate["session"], stack.base_url, "microsoft", teammate["account"]["profile_id"])
    calendar = cal_id(teammate["account"], "Calendar")
    _managed_event(stack, "u_miguel", calendar)
    sub = wiring.connection_service().store.get_connection("u_miguel").cronofy_sub
    stack.emulator.disconnect_profile(teammate["account"]["profile_id"])
    stack.drain()
    if leave == "deactivated":
        stack.send("UserEventsQueue", {"type": "user.deactivated", "message_id": "m-423", "occurred_at": now_z(),
                                       "org_id": "org_sunbright", "user_id": "u_miguel"})
    else:
        assert teammate["session"].delete(stack.url("/v1/calendar/connection")).status_code == 202
    stack.drain()
    assert stack.emulator.count_requests(method="DELETE", path_prefix="/v1/events") == 1  # tried, refused
    assert not [i for i in stack.raw_items() if i["pk"]["S"] == "USER#u_miguel"]  # tokens and connection gone
    state = stack.emulator.account_state(sub)
    assert state["revoked"] is True and state["channels"] == []
    assert connection(stack, teammate["session"]) == {"state": "not_connected"}
    assert stack.queue_messages("UserEventsDLQ") == [] and stack.queue_messages("CleanupDLQ") == []
    changes = [m for m in stack.queue_messages("CalendarChangesQueue") if m["user_id"] == "u_miguel"]
    assert changes[-1]["state"] == "not_connected"


def test_deactivating_a_user_who_never_connected_is_a_quiet_success(stack):
    stack.send("UserEventsQueue", {"type": "user.deactivated", "message_id": "m-2",
                                   "occurred_at": now_z(), "org_id": "org_1", "user_id": "u_new"})
    stack.drain()
    assert stack.queue_messages("UserEventsDLQ") == []
    assert stack.emulator.request_log == []


def test_malformed_message_fails_alone_and_reaches_the_dlq(stack, teammate):
    browser.connect(teammate["session"], stack.base_url, "microsoft", teammate["account"]["profile_id"])
    stack.send("UserEventsQueue", "{not json")
    stack.send("UserEventsQueue", {"type": "user.deactivated", "message_id": "m-3", "org_id": "org_sunbright"})
    stack.send("UserEventsQueue", {"type": "user.deactivated", "message_id": "m-4",
                                   "occurred_at": now_z(), "org_id": "org_sunbright",
                                   "user_id": "u_miguel"})
    stack.drain()
    # The good message was processed...
    assert connection(stack, teammate["session"]) == {"state": "not_connected"}
    # ...and the two bad ones ended in the DLQ after the queue's maxReceiveCount
    dead = stack.queue_messages("UserEventsDLQ")
    assert len(dead) == 2


def test_deactivation_for_the_wrong_org_is_refused(stack, teammate):
    browser.connect(teammate["session"], stack.base_url, "microsoft", teammate["account"]["profile_id"])
    stack.send("UserEventsQueue", {"type": "user.deactivated", "message_id": "m-5",
                                   "occurred_at": now_z(), "org_id": "org_other",
                                   "user_id": "u_miguel"})
    stack.drain()
    assert connection(stack, teammate["session"])["state"] == "connected"
    assert len(stack.queue_messages("UserEventsDLQ")) == 1


def test_tokens_are_encrypted_at_rest(stack, teammate):
    browser.connect(teammate["session"], stack.base_url, "microsoft", teammate["account"]["profile_id"])
    service = wiring.connection_service()
    tokens = service.vault.open("u_miguel", service.store.get_tokens("u_miguel"))
    raw = json.dumps(stack.raw_items(), default=lambda b: base64.b64encode(b).decode())
    assert tokens.access_token not in raw and tokens.refresh_token not in raw
    # A ciphertext moved onto another user's item does not decrypt (encryption context)
    with pytest.raises(ClientError):
        service.vault.open("u_jane", service.store.get_tokens("u_miguel"))


def test_a_batch_of_only_malformed_user_messages_is_a_partial_failure_not_an_error(stack):
    event = stack.sqs_event("UserEventsQueue", ["{not json", {"type": "user.deactivated"}])
    result = stack.invoke("DeactivationCleanupFunction", event)
    assert {f["itemIdentifier"] for f in result["batchItemFailures"]} == {r["messageId"] for r in event["Records"]}


def test_a_second_consent_that_loses_the_race_leaves_the_working_connection_alone(stack, jane):
    """Jane starts connecting again in another tab, then picks her calendar in the first: the second
    consent's callback is refused, and must not revoke the grant (Cronofy revokes by account, so that
    would revoke the connection that now works)."""
    first = browser.connect(jane["session"], stack.base_url, "google", jane["work"]["profile_id"])
    assert first["calendar_sync"] == "choose_calendar"
    url = browser.start_connect(jane["session"], stack.base_url, "google")
    to_callback = browser.consent(jane["session"], url, jane["work"]["profile_id"], follow=False)
    assert to_callback.status_code in (302, 303)
    installs = cal_id(jane["work"], "Installs")
    assert jane["session"].put(stack.url("/v1/calendar/connection"), json={"calendar_id": installs}).status_code == 200
    stack.emulator.clear_request_log()
    landed = jane["session"].get(to_callback.headers["Location"], timeout=20)
    assert browser.outcome(landed)["calendar_sync"] == "error"
    assert stack.emulator.count_requests(path_prefix="/oauth/token/revoke") == 0
    stack.drain()
    _managed_event(stack, "u_jane", installs, "ms_after")  # her calendar still takes writes
    assert connection(stack, jane["session"])["state"] == "connected"


def test_a_run_replaced_by_a_newer_choice_is_not_a_failed_execution(stack, jane):
    connect_jane(stack, jane)
    for name in ("jane.smith@example.com", "Installs"):  # two choices in quick succession
        resp = jane["session"].put(stack.url("/v1/calendar/connection"),
                                   json={"calendar_id": cal_id(jane["work"], name)})
        assert resp.status_code == 200
    stack.drain()
    stack.wait_for_executions()
    assert stack.executions("FAILED") == []  # BackfillFailedAlarm stays quiet
    assert connection(stack, jane["session"])["calendar"]["name"] == "Installs"


def test_an_unexpected_error_is_a_json_500_in_the_contracts_shape(stack, jane, monkeypatch, service_logs):
    from calsync.connections import ConnectionService

    def broken(self, caller):
        raise RuntimeError("a bug with a secret-looking detail: tok_123")

    monkeypatch.setattr(ConnectionService, "status", broken)
    resp = jane["session"].get(stack.url("/v1/calendar/connection"))
    assert resp.status_code == 500
    assert resp.json()["error"]["code"] == "internal_error" and "tok_123" not in resp.text
    assert any(line.get("message") == "unexpected error answering a request" for line in service_logs.lines())
