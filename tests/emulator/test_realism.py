"""The emulator's realism (issue 12), each behaviour on its own switch and on the emulator clock:
asynchronous writes, outside-only last_modified, push retries with backoff, duplicates, reordering,
a channel given up, client secret rotation, profile_initial_sync_completed, window bounds, the
forms Cronofy's SDK sends."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import requests

from localdev.emulator import sign_body
from localdev.emulator.realism import Realism
from localdev.emulator.timefmt import fmt_date, fmt_time

from .conftest import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, Receiver, connect, make_emulator, timed_event


@pytest.fixture
def fresh():
    emulator = make_emulator(realism={"push_duplicate_rate": 0.0, "push_reorder_rate": 0.0})
    yield emulator
    emulator.stop()


@pytest.fixture
def hook():
    r = Receiver()
    yield r
    r.close()


def soon(emu, days=2, hour=15):
    start = (emu.now() + timedelta(days=days)).replace(hour=hour, minute=0, second=0)
    return fmt_time(start), fmt_time(start + timedelta(hours=1))


def wait_until(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def managed_ids(conn):
    resp = conn.get("/v1/events", params={"tzid": "Etc/UTC", "only_managed": "true"}, settle=False)
    assert resp.status_code == 200
    return [e["event_id"] for e in resp.json()["events"]]


def test_realism_is_on_by_default_and_can_be_switched_off(monkeypatch):
    assert Realism.default() == Realism()
    monkeypatch.setenv("CRONOFY_EMULATOR_REALISM", "off")
    assert Realism.default() == Realism.off()
    assert Realism.build({"write_delay": 3}).write_delay == 3 and Realism.build({}).push_retries is False


def test_writes_land_after_the_delay_on_the_emulator_clock(fresh):
    fresh.configure(write_delay=30)
    conn = connect(fresh)
    s, e = soon(fresh)
    sent = fresh.now_iso()
    assert conn.upsert(timed_event("late", start=s, end=e)).status_code == 202
    assert conn.delete(f"/v1/calendars/{conn.calendar_id}/events", json={"event_id": "never"}).status_code == 202
    assert managed_ids(conn) == [] and fresh.pending_writes == 2 and fresh.events(conn.calendar_id) == []
    fresh.advance_clock(29)
    assert managed_ids(conn) == []
    fresh.advance_clock(1)
    assert managed_ids(conn) == ["late"] and fresh.pending_writes == 0
    (event,) = fresh.events(conn.calendar_id)
    assert event["updated"] > sent and event["created"] > sent  # it changed when it landed, not when sent
    # order is kept: an upsert then a delete of the same event end deleted
    conn.upsert(timed_event("late", start=s, end=e, summary="again"))
    conn.delete(f"/v1/calendars/{conn.calendar_id}/events", json={"event_id": "late"})
    assert fresh.settle() is True
    assert managed_ids(conn) == []
    # validation is not deferred: a refused write is refused at once
    assert conn.upsert(timed_event("bad", start="2030-01-01T10:00:00.5Z")).status_code == 422


def test_settle_and_control_routes(fresh):
    base = fresh.base_url + "/_emulator"
    assert requests.get(base + "/realism", timeout=5).json()["write_delay"] == 1.0
    assert requests.post(base + "/realism", json={"write_delay": 5}, timeout=5).json()["write_delay"] == 5
    assert requests.post(base + "/realism", json={"no_such": 1}, timeout=5).status_code == 422
    conn = connect(fresh)
    conn.upsert(timed_event("x"))
    assert managed_ids(conn) == []
    assert requests.post(base + "/settle", json={}, timeout=5).json() == {"settled": True}
    assert managed_ids(conn) == ["x"]


def test_last_modified_is_outside_changes_only(fresh):
    conn = connect(fresh)
    s, e = soon(fresh)
    conn.upsert(timed_event("ours", start=s, end=e))
    fresh.settle()
    mark = fresh.now_iso()
    conn.upsert(timed_event("ours", start=s, end=e, summary="edited by us"))
    fresh.settle()
    read = conn.get("/v1/events", params={"tzid": "Etc/UTC", "include_managed": "true", "last_modified": mark})
    assert read.json()["events"] == []
    fresh.move_event(conn.calendar_id, event_id="ours", start=soon(fresh, 4)[0], end=soon(fresh, 4)[1])
    read = conn.get("/v1/events", params={"tzid": "Etc/UTC", "include_managed": "true", "last_modified": mark})
    assert [ev["event_id"] for ev in read.json()["events"]] == ["ours"]


def test_failed_pushes_are_retried_with_backoff_then_the_channel_is_closed(fresh):
    failing = Receiver(status=500)
    try:
        fresh.configure(push_backoff=10, push_max_attempts=3, initial_sync_delay=None)
        conn = connect(fresh)
        conn.post("/v1/channels", json={"callback_url": failing.url("/down")})
        assert wait_until(lambda: len(failing.received) == 1)  # the verification, first attempt
        time.sleep(0.2)
        assert len(failing.received) == 1  # no retry before the emulator clock reaches the backoff
        fresh.advance_clock(10)
        assert wait_until(lambda: len(failing.received) == 2)
        fresh.advance_clock(19)
        time.sleep(0.2)
        assert len(failing.received) == 2  # the second backoff is 20 s
        fresh.advance_clock(1)
        assert wait_until(lambda: len(failing.received) == 3)
        assert wait_until(lambda: fresh.channels(conn.sub) == [])  # given up: the channel is closed
        attempts = [(n["attempt"], n["status"]) for n in fresh.notifications if n["sub"] == conn.sub]
        assert attempts == [(1, 500), (2, 500), (3, 500)]
        assert conn.get("/v1/channels").json()["channels"] == []
    finally:
        failing.close()


def test_a_recovered_webhook_gets_the_retry(fresh, hook):
    conn = connect(fresh)
    conn.post("/v1/channels", json={"callback_url": hook.url("/flaky")})
    fresh.wait_for_notifications()
    hook.status = 503
    fresh.add_external_event(conn.calendar_id, "Dentist", *soon(fresh))
    assert wait_until(lambda: len(hook.of_type("change", "/flaky")) == 1)
    hook.status = 200
    assert fresh.wait_for_notifications()  # the retry goes out at once (backoff skipped)
    assert len(hook.of_type("change", "/flaky")) == 2
    assert [n["status"] for n in fresh.notifications if n["type"] == "change"] == [503, 200]
    assert fresh.channels(conn.sub) != []


def test_duplicates_and_reordering(fresh, hook):
    conn = connect(fresh)
    conn.post("/v1/channels", json={"callback_url": hook.url("/d")})
    fresh.wait_for_notifications()
    fresh.configure(push_duplicate_rate=1.0)
    fresh.add_external_event(conn.calendar_id, "Dentist", *soon(fresh))
    fresh.wait_for_notifications()
    first, second = hook.of_type("change", "/d")
    assert first["raw"] == second["raw"] and first["headers"]["Cronofy-HMAC-SHA256"] == second["headers"][
        "Cronofy-HMAC-SHA256"]
    # a held-back push is overtaken by the next one
    fresh.configure(push_duplicate_rate=0.0, push_reorder_rate=1.0, push_reorder_delay=60)
    fresh.add_external_event(conn.calendar_id, "Gym", *soon(fresh, 5))
    fresh.configure(push_reorder_rate=0.0)
    fresh.advance_clock(2)
    fresh.add_external_event(conn.calendar_id, "Lunch", *soon(fresh, 6))
    assert wait_until(lambda: len(hook.of_type("change", "/d")) == 3)
    time.sleep(0.1)
    assert len(hook.of_type("change", "/d")) == 3
    fresh.advance_clock(60)
    assert wait_until(lambda: len(hook.of_type("change", "/d")) == 4)
    since = [r["json"]["notification"]["changes_since"] for r in hook.of_type("change", "/d")[2:]]
    assert since[0] > since[1]  # the later change arrived first


def test_secret_rotation_signs_twice_and_accepts_both_secrets(fresh, hook):
    conn = connect(fresh)
    conn.post("/v1/channels", json={"callback_url": hook.url("/r")})
    fresh.wait_for_notifications()
    fresh.begin_secret_rotation("second-secret")
    fresh.add_external_event(conn.calendar_id, "Dentist", *soon(fresh))
    fresh.wait_for_notifications()
    (push,) = hook.of_type("change", "/r")
    assert push["headers"]["Cronofy-HMAC-SHA256"] == ",".join(
        [sign_body(CLIENT_SECRET, push["raw"]), sign_body("second-secret", push["raw"])])
    for secret in (CLIENT_SECRET, "second-secret"):
        resp = requests.post(fresh.base_url + "/oauth/token", timeout=5, json={
            "client_id": CLIENT_ID, "client_secret": secret, "grant_type": "refresh_token",
            "refresh_token": conn.tokens["refresh_token"]})
        assert resp.status_code == 200
        conn.tokens.update(resp.json())
    fresh.complete_secret_rotation()
    assert conn.refresh().status_code == 401  # the helper still uses the retired secret
    fresh.add_external_event(conn.calendar_id, "Gym", *soon(fresh, 3))
    fresh.wait_for_notifications()
    assert hook.of_type("change", "/r")[-1]["headers"]["Cronofy-HMAC-SHA256"] == sign_body(
        "second-secret", hook.of_type("change", "/r")[-1]["raw"])


def test_profile_initial_sync_completed_after_the_first_sync(fresh, hook):
    fresh.configure(initial_sync_delay=30)
    conn = connect(fresh)
    (profile,) = conn.get("/v1/profiles", settle=False).json()["profiles"]
    assert profile["profile_initial_sync_required"] is True
    conn.post("/v1/channels", json={"callback_url": hook.url("/sync")})
    fresh.wait_for_notifications()
    assert hook.of_type("profile_initial_sync_completed") == []
    fresh.advance_clock(30)
    assert wait_until(lambda: len(hook.of_type("profile_initial_sync_completed", "/sync")) == 1)
    (profile,) = conn.get("/v1/profiles", settle=False).json()["profiles"]
    assert profile["profile_initial_sync_required"] is False
    # a channel created after the sync finished never hears of it; a second authorization does not resync
    conn.post("/v1/channels", json={"callback_url": hook.url("/late")})
    fresh.advance_clock(60)
    fresh.wait_for_notifications()
    assert hook.of_type("profile_initial_sync_completed", "/late") == []


def test_free_busy_bounds_and_the_sync_window(fresh):
    conn = connect(fresh)
    today = fresh.now().date()
    base = {"tzid": "Etc/UTC"}
    ok = conn.get("/v1/free_busy", params={**base, "from": fmt_date(today - timedelta(days=42)),
                                           "to": fmt_date(today + timedelta(days=201))})
    assert ok.status_code == 200
    for name, value in (("from", today - timedelta(days=43)), ("to", today + timedelta(days=203))):
        resp = conn.get("/v1/free_busy", params={**base, name: fmt_date(value)})
        assert resp.status_code == 422
        assert resp.json() == {"errors": {name: [{"key": "errors.invalid", "description": resp.json()[
            "errors"][name][0]["description"]}]}}
    far = fresh.now() + timedelta(days=260)
    fresh.add_external_event(conn.calendar_id, "Far away", fmt_time(far), fmt_time(far + timedelta(hours=1)))
    window = {**base, "from": fmt_date(far.date()), "to": fmt_date(far.date() + timedelta(days=1))}
    assert conn.get("/v1/events", params=window).json()["events"] == []  # not synced by Cronofy
    fresh.configure(enforce_windows=False)
    assert len(conn.get("/v1/events", params=window).json()["events"]) == 1


@pytest.mark.parametrize("value, ok", [("true", True), ("True", True), ("False", True), ("FALSE", True),
                                       ("1", False), ("yes", False), ("", False)])
def test_query_booleans_as_the_sdk_sends_them(fresh, value, ok):
    conn = connect(fresh)
    resp = conn.get("/v1/events", params={"tzid": "Etc/UTC", "include_managed": value})
    assert (resp.status_code == 200) is ok, resp.text


def test_authorize_accepts_an_empty_provider_name_and_python_booleans(fresh):
    params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI,
              "scope": "read_events", "state": "s", "provider_name": "", "avoid_linking": "False"}
    assert requests.get(fresh.base_url + "/oauth/authorize", params=params, timeout=5).status_code == 200
    assert requests.get(fresh.base_url + "/oauth/authorize", params={**params, "avoid_linking": "maybe"},
                        timeout=5).status_code == 400
    assert requests.get(fresh.base_url + "/oauth/authorize", params={**params, "provider_name": "yahoo"},
                        timeout=5).status_code == 400
