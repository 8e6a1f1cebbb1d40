"""Channels and signed push notifications."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from localdev.emulator import SIGNATURE_HEADER, sign_body

from .conftest import CLIENT_SECRET, CRONOFY_FIXTURES, Receiver, connect, make_emulator, timed_event


@pytest.fixture(scope="module")
def emu():
    """Exact delivery counts here: no duplicates or held-back pushes (tests/emulator/test_realism.py
    covers those); retries, backoff and asynchronous writes stay on."""
    emulator = make_emulator(realism={"push_duplicate_rate": 0.0, "push_reorder_rate": 0.0})
    yield emulator
    emulator.stop()


def _verify(raw: bytes, header: str, secret: str = CLIENT_SECRET) -> bool:
    expected = base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, value.strip()) for value in header.split(","))


def test_sign_body_matches_fixture_vectors():
    vectors = json.loads((CRONOFY_FIXTURES / "hmac_test_vectors.json").read_text())
    body = vectors["body"].encode()
    for vector in vectors["published_vectors"]:
        assert sign_body(vector["client_secret"], body) == vector["expected"]
    raw = (CRONOFY_FIXTURES / "notification_change.json").read_bytes()
    derived = vectors["derived_vectors_for_fixture_files"]
    assert sign_body("CRN_NggYusqPGLxwjw5FHOJYOqSrTPNXy8WQf14OID", raw) == derived["notification_change.json"]


def test_channel_create_list_close(emu, receiver):
    conn = connect(emu)
    url = receiver.url("/crud")
    resp = conn.post(
        "/v1/channels",
        json={"callback_url": url, "filters": {"calendar_ids": [conn.calendar_id], "only_managed": False}},
    )
    assert resp.status_code == 200
    channel = resp.json()["channel"]
    assert set(channel) == {"channel_id", "callback_url", "filters"}
    assert channel["channel_id"].startswith("chn_")
    assert channel["filters"] == {"calendar_ids": [conn.calendar_id], "only_managed": False}
    assert conn.get("/v1/channels").json() == {"channels": [channel]}
    assert conn.delete(f"/v1/channels/{channel['channel_id']}").status_code == 202
    assert conn.get("/v1/channels").json() == {"channels": []}
    assert conn.delete(f"/v1/channels/{channel['channel_id']}").status_code == 404
    assert conn.delete("/v1/channels/chn_unknown").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"callback_url": "ftp://example.com/hook"},
        {"callback_url": "not a url"},
        {"callback_url": "https://example.com/" + "x" * 110},
        {"callback_url": "https://example.com/h", "filters": {"calendar_ids": []}},
        {"callback_url": "https://example.com/h", "filters": {"calendar_ids": ["cal_not_mine"]}},
        {"callback_url": "https://example.com/h", "filters": {"only_managed": "yes"}},
    ],
)
def test_channel_validation(conn, body):
    resp = conn.post("/v1/channels", json=body)
    assert resp.status_code == 422
    assert resp.json()["errors"]


def test_at_most_128_channels(emu):
    conn = connect(emu)
    emu.wait_for_notifications(10)
    for i in range(128):
        assert conn.post("/v1/channels", json={"callback_url": f"http://127.0.0.1:9/h{i}"}).status_code == 200
    resp = conn.post("/v1/channels", json={"callback_url": "http://127.0.0.1:9/h-extra"})
    assert resp.status_code == 422
    for chan in emu.channels(conn.sub):
        emu.close_channel(chan["channel_id"])


def test_verification_is_signed_and_delivered(emu, receiver):
    conn = connect(emu)
    resp = conn.post("/v1/channels", json={"callback_url": receiver.url("/verify")})
    channel = resp.json()["channel"]
    assert emu.wait_for_notifications(5)
    (hit,) = receiver.of_type("verification", "/verify")
    assert hit["headers"]["Content-Type"] == "application/json; charset=utf-8"
    assert _verify(hit["raw"], hit["headers"][SIGNATURE_HEADER])
    assert not _verify(hit["raw"], hit["headers"][SIGNATURE_HEADER], secret="other")
    assert hit["json"] == {"notification": {"type": "verification"}, "channel": channel}
    assert b" " not in hit["raw"]  # compact JSON
    log = [n for n in emu.notifications if n["channel_id"] == channel["channel_id"]]
    assert log[0]["type"] == "verification" and log[0]["status"] == 200


def test_change_only_for_user_side_changes(emu, receiver):
    conn = connect(emu)
    path = "/change"
    conn.post("/v1/channels", json={"callback_url": receiver.url(path)})
    cal = conn.calendar_id
    # the application's own writes: no change notification
    conn.upsert(timed_event("own-1"))
    conn.upsert(timed_event("own-1", summary="edited"))
    conn.post(
        "/v1/batch",
        json={
            "batch": [
                {
                    "method": "POST",
                    "relative_url": f"/v1/calendars/{cal}/events",
                    "data": timed_event("own-2"),
                }
            ]
        },
    )
    conn.delete(f"/v1/calendars/{cal}/events", json={"event_id": "own-2"})
    conn.delete("/v1/events", json={"delete_all": True})
    emu.wait_for_notifications(5)
    assert receiver.of_type("change", path) == []

    before = emu.now()
    conn.upsert(timed_event("own-3"))
    emu.settle()  # on the calendar before the user acts on it
    emu.move_event(cal, event_id="own-3", start="2030-03-05T18:00:00Z", end="2030-03-05T19:00:00Z")
    emu.delete_event_as_user(cal, event_id="own-3")
    emu.add_external_event(cal, "Dentist", "2030-03-04T16:00:00Z", "2030-03-04T17:00:00Z")
    emu.wait_for_notifications(5)
    changes = receiver.of_type("change", path)
    assert len(changes) == 3
    for hit in changes:
        assert _verify(hit["raw"], hit["headers"][SIGNATURE_HEADER])
        since = hit["json"]["notification"]["changes_since"]
        assert len(since) == 20 and since.endswith("Z") and since < emu.now_iso()
        assert since <= before.strftime("%Y-%m-%dT%H:%M:%SZ")

    # the change is visible with last_modified=changes_since
    since = changes[0]["json"]["notification"]["changes_since"]
    events = conn.get(
        "/v1/events",
        params={
            "tzid": "Etc/UTC",
            "last_modified": since,
            "include_managed": "true",
            "include_deleted": "true",
        },
    ).json()["events"]
    assert {e.get("event_id") for e in events} >= {"own-3"}


def test_channel_filters(emu, receiver):
    conn = connect(emu, calendars=[{"name": "A", "primary": True}, {"name": "B"}])
    cal_a, cal_b = (c["calendar_id"] for c in conn.account["calendars"])
    conn.post(
        "/v1/channels", json={"callback_url": receiver.url("/only-b"), "filters": {"calendar_ids": [cal_b]}}
    )
    conn.post(
        "/v1/channels", json={"callback_url": receiver.url("/managed"), "filters": {"only_managed": True}}
    )
    conn.upsert(timed_event("m1"), calendar_id=cal_a)
    emu.settle()
    emu.add_external_event(cal_a, "ext in A", "2030-03-04T16:00:00Z", "2030-03-04T17:00:00Z")
    emu.add_external_event(cal_b, "ext in B", "2030-03-04T16:00:00Z", "2030-03-04T17:00:00Z")
    emu.move_event(cal_a, event_id="m1", start="2030-03-06T16:00:00Z", end="2030-03-06T17:00:00Z")
    emu.wait_for_notifications(5)
    assert len(receiver.of_type("change", "/only-b")) == 1
    assert len(receiver.of_type("change", "/managed")) == 1


def test_other_accounts_are_not_notified(emu, receiver):
    alice = connect(emu)
    bob = connect(emu)
    bob.post("/v1/channels", json={"callback_url": receiver.url("/bob")})
    emu.add_external_event(alice.calendar_id, "Alice's", "2030-03-04T16:00:00Z", "2030-03-04T17:00:00Z")
    emu.wait_for_notifications(5)
    assert receiver.of_type("change", "/bob") == []


def test_profile_disconnected_notification(emu, receiver):
    conn = connect(emu)
    conn.post("/v1/channels", json={"callback_url": receiver.url("/disc")})
    emu.disconnect_profile(conn.account["profile_id"])
    emu.wait_for_notifications(5)
    (hit,) = receiver.of_type("profile_disconnected", "/disc")
    assert set(hit["json"]["notification"]) == {"type"}
    info = conn.get("/v1/userinfo").json()
    assert info["cronofy.data"]["profiles"][0]["profile_connected"] is False


def test_closed_channels_get_nothing(emu, receiver):
    conn = connect(emu)
    channel = conn.post("/v1/channels", json={"callback_url": receiver.url("/closed")}).json()["channel"]
    emu.close_channel(channel["channel_id"])
    emu.add_external_event(conn.calendar_id, "x", "2030-03-04T16:00:00Z", "2030-03-04T17:00:00Z")
    emu.wait_for_notifications(5)
    assert receiver.of_type("change", "/closed") == []
    assert conn.get("/v1/channels").json()["channels"] == []


def test_failed_deliveries_are_logged(emu):
    failing = Receiver(status=500)
    try:
        conn = connect(emu)
        conn.post("/v1/channels", json={"callback_url": failing.url("/fail")})
        conn.post("/v1/channels", json={"callback_url": "http://127.0.0.1:9/nothing-listens"})
        emu.wait_for_notifications(10)
        mine = [n for n in emu.notifications if n["sub"] == conn.sub]
        assert {n["status"] for n in mine} == {500, None}
        assert all(n["error"] for n in mine)
    finally:
        failing.close()
