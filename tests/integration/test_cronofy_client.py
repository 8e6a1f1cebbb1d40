"""The Cronofy client against the emulator: refresh, rotation, invalid_grant, retries, batch, pages."""

import pytest

from calsync import wiring
from calsync.cronofy import (
    CronofyApp,
    CronofyRateLimited,
    CronofyUnavailable,
    CronofyValidationError,
    InvalidGrant,
    RetryPolicy,
    interactive,
)
from localdev import browser


@pytest.fixture
def connected(stack, teammate):
    browser.connect(teammate["session"], stack.base_url, "microsoft", teammate["account"]["profile_id"])
    stack.drain()  # let the backfill (and its busy refresh) finish before tests count requests
    service = wiring.connection_service()
    conn = service.store.get_connection("u_miguel")
    return service, conn, conn.calendar_id


def event(event_id, day=1):
    return {"event_id": event_id, "summary": f"Install {event_id}",
            "start": {"time": f"2026-12-{day:02d}T15:00:00Z", "tzid": "America/Denver"},
            "end": {"time": f"2026-12-{day:02d}T17:00:00Z", "tzid": "America/Denver"}}


def test_expired_access_token_is_refreshed_and_the_rotated_refresh_token_stored(stack, connected):
    service, conn, calendar_id = connected
    before = service.vault.open(conn.user_id, service.store.get_tokens(conn.user_id))
    stack.emulator.advance_clock(7200)  # access tokens live one hour
    client = service.user_client(conn)
    client.tokens = client.tokens.model_copy(update={"expires_at": before.expires_at.replace(year=2100)})
    client.upsert_event(calendar_id, event("ev_1"))  # 401 -> refresh -> retry
    after = service.vault.open(conn.user_id, service.store.get_tokens(conn.user_id))
    assert after.refresh_token != before.refresh_token  # rotated and stored
    assert stack.emulator.count_requests(method="POST", path_prefix=f"/v1/calendars/{calendar_id}/events") == 2
    # The stored (rotated) token keeps working; the old one is dead
    service.user_client(conn).calendars()
    with pytest.raises(InvalidGrant):
        service.cronofy.refresh(before)


def test_revoked_authorization_raises_invalid_grant_and_marks_needs_reauth(stack, connected, teammate):
    service, conn, _ = connected
    stack.emulator.revoke_account(conn.cronofy_sub)
    resp = teammate["session"].get(stack.url("/v1/calendar/calendars"))
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "needs_reauth"
    status = teammate["session"].get(stack.url("/v1/calendar/connection")).json()
    assert status["state"] == "needs_reauth" and status["last_error"] == "authorization_revoked"
    changes = stack.queue_messages("CalendarChangesQueue")
    assert changes[-1]["state"] == "needs_reauth"
    # Reconnecting restores the connection
    result = browser.connect(teammate["session"], stack.base_url, "microsoft", teammate["account"]["profile_id"])
    assert result["calendar_sync"] == "connected"


def test_429_with_retry_after_is_honoured(stack, connected):
    service, conn, calendar_id = connected
    slept = []
    app = CronofyApp(service.cronofy.client_id, wiring.get_settings().secrets()[0], stack.emulator.base_url,
                     stack.emulator.base_url, sleep=slept.append)
    tokens = service.vault.open(conn.user_id, service.store.get_tokens(conn.user_id))
    client = app.for_user(tokens, lambda t: None)
    stack.emulator.add_fault(path_prefix="/v1/calendars", status=429, retry_after=2, count=2)
    client.upsert_event(calendar_id, event("ev_429"))
    assert slept == [2.0, 2.0]
    stack.settle()  # accepted (202) means applied later
    assert any(e["event_id"] == "ev_429" for e in stack.emulator.events(calendar_id))


def test_long_retry_after_hands_the_work_back_instead_of_sleeping(stack, connected):
    service, conn, calendar_id = connected
    slept = []
    app = CronofyApp(service.cronofy.client_id, wiring.get_settings().secrets()[0], stack.emulator.base_url,
                     stack.emulator.base_url, sleep=slept.append, retry=RetryPolicy(max_sleep=5))
    client = app.for_user(service.vault.open(conn.user_id, service.store.get_tokens(conn.user_id)), lambda t: None)
    stack.emulator.add_fault(path_prefix="/v1/calendars", status=429, retry_after=60, count=1)
    with pytest.raises(CronofyRateLimited) as error:
        client.upsert_event(calendar_id, event("ev_slow"))
    assert error.value.retry_after == 60 and slept == []


def test_a_person_waiting_on_a_route_is_answered_within_their_time(stack, connected):
    """Inside `interactive(seconds)` a retry or a wait that would pass the time left fails at once:
    the route answers a clear 503 (or the callback its redirect) before Lambda's timeout."""
    service, conn, calendar_id = connected
    slept = []
    app = CronofyApp(service.cronofy.client_id, wiring.get_settings().secrets()[0], stack.emulator.base_url,
                     stack.emulator.base_url, sleep=slept.append)
    client = app.for_user(service.vault.open(conn.user_id, service.store.get_tokens(conn.user_id)), lambda t: None)
    stack.emulator.add_fault(path_prefix="/v1/calendars", status=429, retry_after=3, count=None)
    stack.emulator.clear_request_log()
    with interactive(2.0), pytest.raises(CronofyRateLimited):
        client.upsert_event(calendar_id, event("ev_hurry"))
    assert slept == [] and stack.emulator.count_requests(path_prefix="/v1/calendars") == 1
    stack.emulator.clear_faults()
    stack.emulator.add_fault(path_prefix="/v1/calendars", status=429, retry_after=1, count=1)
    with interactive(10.0):  # time enough: retried as usual
        client.upsert_event(calendar_id, event("ev_later"))
    assert slept == [1.0]
    with interactive(0.0), pytest.raises(CronofyUnavailable):
        client.upsert_event(calendar_id, event("ev_none"))  # no time at all: not even sent


def test_5xx_and_timeouts_are_retried_then_reported(stack, connected):
    service, conn, calendar_id = connected
    slept = []
    app = CronofyApp(service.cronofy.client_id, wiring.get_settings().secrets()[0], stack.emulator.base_url,
                     stack.emulator.base_url, sleep=slept.append, timeout=0.5,
                     retry=RetryPolicy(max_attempts=3))
    client = app.for_user(service.vault.open(conn.user_id, service.store.get_tokens(conn.user_id)), lambda t: None)
    stack.emulator.add_fault(path_prefix="/v1/calendars", status=503, count=2)
    client.upsert_event(calendar_id, event("ev_503"))  # third attempt succeeds
    assert len(slept) == 2 and all(0 <= s <= 4 for s in slept)
    stack.emulator.add_fault(path_prefix="/v1/calendars", mode="timeout", latency_ms=1500, count=3)
    with pytest.raises(CronofyUnavailable):
        client.upsert_event(calendar_id, event("ev_timeout"))


def test_batch_results_are_per_item(stack, connected):
    service, conn, calendar_id = connected
    client = service.user_client(conn)
    path = f"/v1/calendars/{calendar_id}/events"
    bad = event("ev_bad") | {"start": {"time": "2026-12-01T15:00:00.250Z", "tzid": "America/Denver"}}
    results = client.batch([
        {"method": "POST", "relative_url": path, "data": event("ev_a")},
        {"method": "POST", "relative_url": path, "data": bad},
        {"method": "DELETE", "relative_url": path, "data": {"event_id": "ev_a"}},
    ])
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].status == 422
    with pytest.raises(ValueError):
        client.batch([{"method": "POST", "relative_url": path, "data": event(f"e{i}")} for i in range(51)])


def test_validation_errors_are_not_retried(stack, connected):
    service, conn, calendar_id = connected
    client = service.user_client(conn)
    stack.emulator.clear_request_log()
    with pytest.raises(CronofyValidationError) as error:
        client.upsert_event(calendar_id, {"event_id": "ev_x", "summary": "x", "start": "2026-12-01T15:00:00Z",
                                          "end": "2026-12-01T16:00:00Z"})  # no tzid
    assert error.value.status == 422 and "tzid" in error.value.body["errors"]
    assert len(stack.emulator.request_log) == 1


def test_read_events_follows_every_page(stack, connected):
    service, conn, calendar_id = connected
    client = service.user_client(conn)
    for i in range(1, 8):
        stack.emulator.add_external_event(calendar_id, f"Appointment {i}", f"2026-12-{i:02d}T10:00:00Z",
                                          f"2026-12-{i:02d}T11:00:00Z")
    stack.emulator.state.page_size = 3
    stack.emulator.clear_request_log()
    found = list(client.read_events(**{"from": "2026-11-30", "to": "2026-12-31"}))
    assert sorted(e["summary"] for e in found) == [f"Appointment {i}" for i in range(1, 8)]
    assert stack.emulator.count_requests(method="GET", path_prefix="/v1/events") == 3
    blocks = list(client.free_busy(**{"from": "2026-11-30", "to": "2026-12-31"}))
    assert len(blocks) == 7


def test_bulk_delete_needs_exactly_one_selector(connected):
    service, conn, _ = connected
    client = service.user_client(conn)
    with pytest.raises(ValueError):
        client.bulk_delete()
    with pytest.raises(ValueError):
        client.bulk_delete(delete_all=True, calendar_ids=["cal_1"])


def test_user_tokens_are_never_sent_to_another_host(connected):
    service, conn, _ = connected
    client = service.user_client(conn)
    with pytest.raises(Exception, match="refusing"):
        client.request("GET", "https://attacker.example/v1/events")


def test_a_refresh_token_rotated_by_another_refresh_is_not_taken_for_a_lost_grant(stack, connected):
    """Two clients of one user (two invocations, or two steps of one): the first refreshes and Cronofy
    rotates the refresh token; the second, holding the spent one, gets invalid_grant, reads the stored
    tokens again and goes on with them. The connection stays connected (no false needs_reauth)."""
    service, conn, calendar_id = connected
    stale = service.user_client(conn)
    stack.emulator.advance_clock(7200)  # access tokens live one hour
    first = service.user_client(conn)
    first.refresh()  # rotates: the refresh token `stale` holds is revoked at Cronofy
    assert first.tokens.refresh_token != stale.tokens.refresh_token
    stale.upsert_event(calendar_id, event("ev_rotated"))  # expired -> invalid_grant -> the stored tokens
    assert stale.tokens.refresh_token == first.tokens.refresh_token
    assert service.store.get_connection(conn.user_id).state.value == "connected"
    stack.settle()  # accepted writes land a moment later
    assert any(e["event_id"] == "ev_rotated" for e in stack.emulator.events(calendar_id))


def test_a_grant_revoked_for_good_is_still_invalid_grant_after_the_stored_tokens_are_read(stack, connected, teammate):
    service, conn, calendar_id = connected
    stack.emulator.revoke_account(conn.cronofy_sub)
    stack.emulator.advance_clock(7200)
    client = service.user_client(conn)
    with pytest.raises(InvalidGrant):
        client.upsert_event(calendar_id, event("ev_gone"))
