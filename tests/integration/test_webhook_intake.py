"""The webhook intake (POST /v1/webhooks/cronofy/{channel_token}) with the emulator's real signed
notifications through the router, and hand-made requests for everything a caller can get wrong."""

import base64
import json
import time

import pytest
import requests

from calsync import push_signature
from localdev import browser
from localdev import stack as local
from localdev.emulator import SIGNATURE_HEADER, sign_body

FUNCTION = "WebhookIntakeFunction"


@pytest.fixture
def miguel(stack, teammate):
    """Miguel connected (one writable calendar, selected automatically), backfill done, push channel open."""
    result = browser.connect(teammate["session"], stack.base_url, "microsoft", teammate["account"]["profile_id"])
    assert result["calendar_sync"] == "connected", result
    stack.drain()
    [channel] = stack.emulator.channels()
    calendar_id = next(c["calendar_id"] for c in teammate["account"]["calendars"] if c["calendar_name"] == "Calendar")
    return {"channel": channel, "calendar_id": calendar_id, "user_id": "u_miguel", "org_id": "org_sunbright"}




def notification_body(channel, kind, **fields):
    """A notification as Cronofy sends it: compact JSON, `notification` first."""
    payload = {"notification": {"type": kind, **fields}, "channel": {
        "channel_id": channel["channel_id"], "callback_url": channel["callback_url"], "filters": channel["filters"]}}
    return json.dumps(payload, separators=(",", ":")).encode()


def post(url, body, signature="sign"):
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if signature == "sign":
        signature = sign_body(local.CLIENT_SECRET, body)
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    return requests.post(url, data=body, headers=headers, timeout=10)


def token_of(channel):
    return channel["callback_url"].rsplit("/", 1)[1]


def with_token(channel, token):
    return channel["callback_url"].rsplit("/", 1)[0] + "/" + token


def assert_refused(resp, status, code):
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code
    assert resp.json()["error"]["message"]


def test_verification_after_channel_creation_is_accepted_and_not_queued(stack, miguel):
    # The emulator sent its real, signed verification right after the channel was created
    delivered = [n for n in stack.emulator.notifications if n["type"] == "verification"]
    assert len(delivered) == 1
    assert delivered[0]["url"] == miguel["channel"]["callback_url"]
    assert 200 <= delivered[0]["status"] < 300 and delivered[0]["error"] is None
    # every delivery reached the intake once (the profile's first sync may have completed since,
    # which Cronofy announces with profile_initial_sync_completed); the verification was not queued
    assert stack.invocations[FUNCTION] == len(stack.emulator.notifications)
    queued = [json.loads(m) if isinstance(m, str) else m for m in stack.queue_messages("NotificationsQueue")]
    assert all(m["notification_type"] != "verification" for m in queued)


def test_a_calendar_change_is_queued_once_with_the_users_ids(stack, miguel, service_logs):
    calendar_id = miguel["calendar_id"]
    # Given an event Miguel added on his calendar (its own change notification is queued and read)
    uid = stack.emulator.add_external_event(calendar_id, "Dentist", "2026-12-02T09:00:00Z", "2026-12-02T10:00:00Z")
    assert stack.emulator.wait_for_notifications(timeout=5)
    assert stack.drain() == 1
    stack.emulator.clear_notifications()
    stack.emulator.clear_request_log()
    # When he moves it
    stack.emulator.move_event(calendar_id, event_uid=uid, start="2026-12-02T11:00:00Z", end="2026-12-02T12:00:00Z")
    assert stack.emulator.wait_for_notifications(timeout=5)
    # Then Cronofy's signed change notification was accepted
    [delivered] = stack.emulator.notifications
    assert delivered["type"] == "change" and delivered["status"] == 202, delivered
    # and exactly one message waits for the notification processor
    [message] = stack.queue_messages("NotificationsQueue")
    assert message["type"] == "cronofy.notification"
    assert message["notification_type"] == "change"
    assert message["channel_id"] == miguel["channel"]["channel_id"]
    assert message["user_id"] == miguel["user_id"] and message["org_id"] == miguel["org_id"]
    assert message["changes_since"] == delivered["changes_since"]
    assert message["received_at"].endswith("Z") and message["message_id"]
    # without any call to Cronofy
    assert stack.emulator.request_log == []
    # and the signature and channel token never reach the logs
    logs = service_logs.getvalue()
    assert "cronofy notification queued" in logs
    assert delivered["signature"] not in logs and token_of(miguel["channel"]) not in logs


def test_profile_notifications_are_queued_without_changes_since(stack, miguel):
    url = miguel["channel"]["callback_url"]
    for kind in ("profile_disconnected", "profile_initial_sync_completed"):
        resp = post(url, notification_body(miguel["channel"], kind))
        assert resp.status_code == 202, resp.text
    messages = stack.queue_messages("NotificationsQueue")
    assert [(m["notification_type"], m["changes_since"], m["user_id"]) for m in messages] == [
        ("profile_disconnected", None, "u_miguel"), ("profile_initial_sync_completed", None, "u_miguel")]
    assert len({m["message_id"] for m in messages}) == 2


@pytest.mark.parametrize("make_signature", [
    lambda body: None,
    lambda body: "",
    lambda body: ",,",
    lambda body: "AAAA",
    lambda body: sign_body("not-our-secret", body),
    lambda body: sign_body(local.CLIENT_SECRET, body)[:-2],
], ids=["missing", "empty", "only-commas", "garbage", "other-secret", "truncated"])
def test_a_bad_signature_is_refused_and_nothing_is_queued(stack, miguel, make_signature):
    body = notification_body(miguel["channel"], "change", changes_since="2026-11-24T10:00:00Z")
    assert_refused(post(miguel["channel"]["callback_url"], body, make_signature(body)), 401, "invalid_signature")
    assert stack.queue_messages("NotificationsQueue") == []


def test_a_non_ascii_signature_is_refused(stack, miguel):
    # http.client refuses such header values: the event goes to the function directly
    body = notification_body(miguel["channel"], "change", changes_since="2026-11-24T10:00:00Z")
    event = api_event(body, miguel["channel"], {"Cronofy-HMAC-SHA256": "é" + sign_body(local.CLIENT_SECRET, body)[1:]})
    result = stack.invoke(FUNCTION, event)
    assert result["statusCode"] == 401
    assert json.loads(result["body"])["error"]["code"] == "invalid_signature"
    assert stack.queue_messages("NotificationsQueue") == []


def test_a_tampered_body_is_refused(stack, miguel):
    body = notification_body(miguel["channel"], "change", changes_since="2026-11-24T10:00:00Z")
    signature = sign_body(local.CLIENT_SECRET, body)
    tampered = body.replace(b"2026-11-24T10", b"2026-11-24T11")
    assert_refused(post(miguel["channel"]["callback_url"], tampered, signature), 401, "invalid_signature")
    assert stack.queue_messages("NotificationsQueue") == []


def test_rotation_header_with_our_value_second_is_accepted(stack, miguel):
    body = notification_body(miguel["channel"], "change", changes_since="2026-11-24T10:00:00Z")
    header = f"{sign_body('retired-secret', body)}, {sign_body(local.CLIENT_SECRET, body)}"
    assert post(miguel["channel"]["callback_url"], body, header).status_code == 202
    assert len(stack.queue_messages("NotificationsQueue")) == 1


def test_a_wrong_or_missing_channel_token_is_refused(stack, miguel, service_logs):
    channel = miguel["channel"]
    body = notification_body(channel, "change", changes_since="2026-11-24T10:00:00Z")
    # Another user's token (a real token of this service), a forged one, a truncated one, none
    for token in (push_signature.channel_token(local.SIGNING_KEY, "u_jane"), "A" * 22, token_of(channel)[:-1]):
        assert_refused(post(with_token(channel, token), body), 401, "invalid_channel")
    assert_refused(post(stack.url("/v1/webhooks/cronofy"), body), 401, "invalid_channel")
    assert stack.queue_messages("NotificationsQueue") == []
    assert "channel_token_mismatch" in service_logs.getvalue()
    assert "channel_token_missing" in service_logs.getvalue()


def test_an_unknown_channel_is_refused(stack, miguel, service_logs):
    channel = dict(miguel["channel"], channel_id="chn_000000000000000000000000")
    resp = post(miguel["channel"]["callback_url"], notification_body(channel, "change"))
    assert_refused(resp, 401, "invalid_channel")
    assert stack.queue_messages("NotificationsQueue") == []
    assert "unknown_channel" in service_logs.getvalue()


def test_a_closed_channel_of_a_disconnected_user_is_refused(stack, miguel):
    teammate = stack.browser(miguel["user_id"], miguel["org_id"])
    assert teammate.delete(stack.url("/v1/calendar/connection")).status_code == 202
    stack.drain()
    resp = post(miguel["channel"]["callback_url"], notification_body(miguel["channel"], "change"))
    assert_refused(resp, 401, "invalid_channel")
    assert stack.queue_messages("NotificationsQueue") == []


def api_event(body, channel, headers, base64_encoded=False, token="from-channel"):
    token = token_of(channel) if token == "from-channel" else token
    return {
        "version": "2.0",
        "routeKey": "POST /v1/webhooks/cronofy/{channel_token}",
        "rawPath": f"/v1/webhooks/cronofy/{token}",
        "rawQueryString": "",
        "headers": {"content-type": "application/json; charset=utf-8", **headers},
        "pathParameters": {"channel_token": token},
        "requestContext": {"http": {"method": "POST", "path": f"/v1/webhooks/cronofy/{token}"},
                           "requestId": "req-webhook-test", "routeKey": "POST /v1/webhooks/cronofy/{channel_token}",
                           "stage": "$default"},
        "body": base64.b64encode(body).decode() if base64_encoded else body.decode(),
        "isBase64Encoded": base64_encoded,
    }


def test_a_base64_encoded_body_is_verified_on_its_decoded_bytes(stack, miguel):
    # Non-ASCII in the body: the signature covers the UTF-8 bytes API Gateway base64-encoded
    body = notification_body(miguel["channel"], "change", changes_since="2026-11-24T10:00:00Z", note="café ☕")
    signature = sign_body(local.CLIENT_SECRET, body)
    event = api_event(body, miguel["channel"], {"Cronofy-HMAC-SHA256": signature}, base64_encoded=True)
    result = stack.invoke(FUNCTION, event)
    assert result["statusCode"] == 202, result
    [message] = stack.queue_messages("NotificationsQueue")
    assert message["user_id"] == "u_miguel" and message["changes_since"] == "2026-11-24T10:00:00Z"
    # The signature of the base64 text itself is not the signature of the body
    event["headers"]["Cronofy-HMAC-SHA256"] = sign_body(local.CLIENT_SECRET, event["body"].encode())
    assert stack.invoke(FUNCTION, event)["statusCode"] == 401
    event["body"] = "not base64!"
    assert stack.invoke(FUNCTION, event)["statusCode"] == 400
    # Binary that is not UTF-8 JSON (API Gateway base64-encodes it), correctly signed
    binary = b"\xff\xfe\x00garbage"
    event = api_event(binary, miguel["channel"], {"cronofy-hmac-sha256": sign_body(local.CLIENT_SECRET, binary)},
                      base64_encoded=True)
    assert stack.invoke(FUNCTION, event)["statusCode"] == 400
    assert stack.queue_messages("NotificationsQueue") == []


def test_an_oversized_body_is_refused_before_anything_else(stack, miguel):
    body = notification_body(miguel["channel"], "change", changes_since="2026-11-24T10:00:00Z",
                             padding="x" * (64 * 1024))
    assert_refused(post(miguel["channel"]["callback_url"], body), 413, "body_too_large")
    assert_refused(post(miguel["channel"]["callback_url"], body, None), 413, "body_too_large")
    huge = api_event(b"x" * (300 * 1024), miguel["channel"], {}, base64_encoded=True)
    assert stack.invoke(FUNCTION, huge)["statusCode"] == 413
    assert stack.queue_messages("NotificationsQueue") == []


@pytest.mark.parametrize("body", [
    b"not json",
    b"[1, 2, 3]",
    b"{}",
    b'{"notification": "change"}',
    b'{"notification": {"changes_since": "2026-11-24T10:00:00Z"}}',
    b'{"notification": {"type": 7}}',
    b'{"notification": {"type": "change"}}',  # no channel
    b'{"notification": {"type": "change"}, "channel": {"channel_id": ""}}',
    b'{"notification": {"type": "change", "changes_since": 5}, "channel": {"channel_id": "chn_1"}}',
    b"[" * 30000 + b"]" * 30000,
], ids=["text", "array", "empty-object", "not-an-object", "no-type", "type-not-string",
        "no-channel", "empty-channel-id", "changes-since-not-string", "deep-nesting"])
def test_a_signed_body_that_is_not_a_notification_is_a_400(stack, miguel, body):
    resp = post(miguel["channel"]["callback_url"], body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] in ("invalid_notification", "invalid_body")
    assert stack.queue_messages("NotificationsQueue") == []


def test_unknown_notification_types_are_acknowledged_and_ignored(stack, miguel):
    for kind in ("gdpr_requested", "conferencing_profile_disconnected", "something_new_" + "x" * 500):
        resp = post(miguel["channel"]["callback_url"], notification_body(miguel["channel"], kind))
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"status": "ignored"}
    # even on a URL without a channel token: nothing is looked up for them
    resp = post(stack.url("/v1/webhooks/cronofy"), notification_body(miguel["channel"], "verification"))
    assert resp.status_code == 200
    assert stack.queue_messages("NotificationsQueue") == []


def test_a_replayed_notification_is_dropped_before_any_queue_or_cronofy_call(stack, miguel, monkeypatch):
    from functions.webhook_intake import app as intake

    calendar_id = miguel["calendar_id"]
    stack.emulator.add_external_event(calendar_id, "Dentist", "2026-12-02T09:00:00Z", "2026-12-02T10:00:00Z")
    assert stack.emulator.wait_for_notifications(timeout=5)
    [delivered] = [n for n in stack.emulator.notifications if n["type"] == "change"]
    assert delivered["status"] == 202
    stack.drain()  # the genuine one is read once
    stack.emulator.clear_request_log()
    # Minutes to a day later, an attacker who captured it replays it, signature and all, many times
    for minutes in (5, 60, 600, 1400):
        monkeypatch.setattr(intake, "_clock", lambda m=minutes: time.time() + m * 60)
        for _ in range(3):
            resp = post(delivered["url"], delivered["body"].encode(), delivered["signature"])
            assert resp.status_code == 200 and resp.json() == {"status": "duplicate"}
    # Nothing is queued and Cronofy is never asked
    assert stack.queue_messages("NotificationsQueue") == []
    stack.drain()
    assert stack.emulator.request_log == []


def test_a_copy_while_the_first_is_queued_is_coalesced_and_one_after_its_read_passes(stack, miguel):
    # Two genuine changes in the same second share changes_since: their notifications are identical
    channel, url = miguel["channel"], miguel["channel"]["callback_url"]
    body = notification_body(channel, "change", changes_since="2026-11-30T10:00:00Z")
    assert post(url, body).status_code == 202
    # While the first is still queued, its read (later) covers the second change: coalesced
    assert post(url, body).json() == {"status": "duplicate"}
    assert stack.drain() == 1
    # Once the first was read, a copy within seconds may be a later change in that same second: queued
    assert post(url, body).status_code == 202
    assert stack.drain() == 1


def test_a_stale_notification_is_dropped_and_a_newer_one_still_queued(stack, miguel):
    channel, url = miguel["channel"], miguel["channel"]["callback_url"]
    assert post(url, notification_body(channel, "change", changes_since="2026-11-28T10:00:00Z")).status_code == 202
    # One far behind the newest accepted on this channel (Cronofy retries for a day, not three)
    resp = post(url, notification_body(channel, "change", changes_since="2026-11-25T09:00:00Z"))
    assert resp.status_code == 200 and resp.json() == {"status": "stale"}
    # A little behind (a genuine retry arriving late) and newer ones pass
    assert post(url, notification_body(channel, "change", changes_since="2026-11-28T09:00:00Z")).status_code == 202
    assert post(url, notification_body(channel, "change", changes_since="2026-11-29T10:00:00Z")).status_code == 202
    assert [m["changes_since"] for m in stack.queue_messages("NotificationsQueue")] == [
        "2026-11-28T10:00:00Z", "2026-11-28T09:00:00Z", "2026-11-29T10:00:00Z"]


def test_a_notification_that_could_not_be_queued_is_accepted_on_cronofys_retry(stack, miguel, monkeypatch):
    from functions.webhook_intake import app as intake

    channel, url = miguel["channel"], miguel["channel"]["callback_url"]
    body = notification_body(channel, "change", changes_since="2026-11-30T10:00:00Z")
    _, _, sqs = intake._store_and_queue()

    def broken(**kwargs):
        raise RuntimeError("SQS is unavailable")

    monkeypatch.setattr(sqs, "send_message", broken)
    assert post(url, body).status_code >= 500
    monkeypatch.undo()
    assert post(url, body).status_code == 202
    assert len(stack.queue_messages("NotificationsQueue")) == 1
