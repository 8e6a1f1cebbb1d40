"""Faults, the rate limit, routing errors, the request log and the HTTP control API."""

from __future__ import annotations

import time

import pytest
import requests

from localdev.emulator import oauth

from .conftest import connect, landed, make_emulator, timed_event, unique_email


def test_unknown_path_404_and_wrong_method_405(conn):
    resp = conn.get("/v1/nothing-here")
    assert resp.status_code == 404 and resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert resp.json()["error"] == "not_found"
    resp = conn.request("PUT", "/v1/calendars")
    assert resp.status_code == 405 and "GET" in resp.headers["Allow"]


def test_fault_429_with_retry_after_then_normal(emu, conn):
    emu.add_fault(path_prefix="/v1/calendars", status=429, retry_after=7, count=2)
    for _ in range(2):
        resp = conn.get("/v1/calendars")
        assert resp.status_code == 429 and resp.headers["Retry-After"] == "7"
        assert resp.json()["error"]
    assert conn.get("/v1/calendars").status_code == 200


def test_fault_503_matches_method_and_prefix(emu, conn):
    emu.add_fault(path_prefix="/v1/calendars/", method="POST", status=503, count=1)
    assert conn.get("/v1/calendars").status_code == 200  # GET and a different path: untouched
    assert conn.upsert(timed_event("f1")).status_code == 503
    assert landed(emu, conn.calendar_id) == []
    assert conn.upsert(timed_event("f1")).status_code == 202


def test_fault_timeout_makes_a_short_client_time_out_but_the_write_lands(emu, conn):
    emu.add_fault(path_prefix="/v1/calendars/", mode="timeout", latency_ms=600, count=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        conn.session.post(
            conn.url(f"/v1/calendars/{conn.calendar_id}/events"),
            json=timed_event("slow"),
            headers=conn.headers,
            timeout=0.2,
        )
    deadline = time.time() + 3
    while not landed(emu, conn.calendar_id) and time.time() < deadline:
        time.sleep(0.05)
    assert [e["event_id"] for e in landed(emu, conn.calendar_id)] == ["slow"]


def test_fault_latency_only_and_drop(emu, conn):
    emu.add_fault(path_prefix="/v1/userinfo", status=None, latency_ms=150)
    started = time.time()
    assert conn.get("/v1/userinfo").status_code == 200
    assert time.time() - started >= 0.15
    emu.add_fault(path_prefix="/v1/calendars/", mode="drop")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(
            conn.url(f"/v1/calendars/{conn.calendar_id}/events"),
            json=timed_event("dropped"),
            headers=conn.headers,
            timeout=5,
        )
    assert landed(emu, conn.calendar_id) == []


def test_faults_never_hit_control_paths_and_can_be_cleared(emu):
    emu.add_fault(path_prefix="/", status=500, count=None)
    try:
        assert requests.get(emu.base_url + "/_emulator/state", timeout=5).status_code == 200
        assert requests.get(emu.base_url + "/v1/userinfo", timeout=5).status_code == 500
    finally:
        emu.clear_faults()
    assert requests.get(emu.base_url + "/v1/userinfo", timeout=5).status_code == 401
    with pytest.raises(ValueError):
        emu.add_fault(path_prefix="/_emulator/state")


def test_rate_limit_per_second():
    emu = make_emulator()
    try:
        conn = connect(emu)
        emu.set_rate_limit((5, 500))  # starts a fresh window
        statuses = [conn.get("/v1/calendars").status_code for _ in range(8)]
        assert statuses[:5] == [200] * 5
        assert statuses[5:] == [429] * 3
        limited = conn.get("/v1/calendars")
        assert limited.headers["Retry-After"] == "1"
        stats = emu.stats
        assert stats["rate_limited"] == 4 and stats["max_per_second"] >= 9
        time.sleep(1.05)
        assert conn.get("/v1/calendars").status_code == 200
        # the consent page is not metered
        assert all(
            requests.get(emu.base_url + "/oauth/authorize", timeout=5).status_code == 400 for _ in range(8)
        )
    finally:
        emu.stop()


def test_rate_limit_per_minute():
    emu = make_emulator(rate_limit=(100, 6))
    try:
        conn = connect(emu)
        statuses = [conn.get("/v1/userinfo").status_code for _ in range(7)]
        assert statuses.count(429) == 2
        assert int(conn.get("/v1/userinfo").headers["Retry-After"]) > 50
        emu.set_rate_limit(None)
        assert conn.get("/v1/userinfo").status_code == 200
        assert emu.stats["max_per_minute"] >= 9
    finally:
        emu.stop()


def test_request_log_and_counts(emu):
    conn = connect(emu)
    emu.clear_request_log()
    conn.upsert(timed_event("log-1"))
    conn.get("/v1/events", params={"tzid": "Etc/UTC", "calendar_ids[]": [conn.calendar_id]})
    requests.get(emu.base_url + "/_emulator/state", timeout=5)  # never logged
    log = emu.request_log
    assert [(e["method"], e["path"], e["status"]) for e in log] == [
        ("POST", f"/v1/calendars/{conn.calendar_id}/events", 202),
        ("GET", "/v1/events", 200),
    ]
    assert log[1]["query"] == {"tzid": ["Etc/UTC"], "calendar_ids[]": [conn.calendar_id]}
    assert all(e["sub"] == conn.sub and isinstance(e["at"], float) for e in log)
    assert emu.count_requests() == 2
    assert emu.count_requests(method="POST", path_prefix="/v1/calendars/") == 1
    assert emu.count_requests(method="get") == 1
    assert emu.count_requests(path_prefix="/oauth") == 0


def test_control_http_api(emu, receiver):
    base = emu.base_url + "/_emulator"
    created = requests.post(
        base + "/accounts",
        timeout=5,
        json={
            "provider": "microsoft",
            "email": unique_email("ctl"),
            "calendars": [{"name": "Calendar", "primary": True}, {"name": "Holidays", "readonly": True}],
        },
    )
    assert created.status_code == 201
    account = created.json()
    assert account["provider_name"] == "exchange" and account["provider_service"] == "office365"
    assert account["calendars"][1]["calendar_readonly"] is True
    cal = account["calendars"][0]["calendar_id"]

    ext = requests.post(
        f"{base}/calendars/{cal}/external-events",
        timeout=5,
        json={"summary": "Dentist", "start": "2030-03-04T16:00:00Z", "end": "2030-03-04T17:00:00Z"},
    )
    assert ext.status_code == 201
    uid = ext.json()["event_uid"]
    moved = requests.post(
        f"{base}/calendars/{cal}/events/move",
        timeout=5,
        json={"event_uid": uid, "start": "2030-03-04T18:00:00Z", "end": "2030-03-04T19:00:00Z"},
    )
    assert moved.status_code == 200 and moved.json()["start"] == "2030-03-04T18:00:00Z"
    assert (
        requests.post(f"{base}/calendars/{cal}/events/delete", json={"event_uid": uid}, timeout=5).status_code
        == 200
    )
    listed = requests.get(
        f"{base}/calendars/{cal}/events", params={"include_deleted": "true"}, timeout=5
    ).json()
    assert listed["events"][0]["deleted"] is True
    assert requests.get(f"{base}/calendars/{cal}/events", timeout=5).json() == {"events": []}

    assert (
        requests.post(
            f"{base}/calendars/{cal}/events/move",
            json={"event_uid": "evt_nope", "start": "x", "end": "y"},
            timeout=5,
        ).status_code
        == 404
    )
    assert (
        requests.post(
            base + "/accounts", json={"provider": "myspace", "email": "a@b.c"}, timeout=5
        ).status_code
        == 422
    )
    assert requests.post(base + "/accounts", json={"email": "a@b.c"}, timeout=5).status_code == 400

    code = requests.post(
        base + "/authorize",
        timeout=5,
        json={"profile_id": account["profile_id"], "redirect_uri": "http://app.test/cb"},
    ).json()["code"]
    tokens = requests.post(
        emu.base_url + "/oauth/token",
        timeout=5,
        json={
            "client_id": emu.client_id,
            "client_secret": emu.client_secret,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "http://app.test/cb",
        },
    ).json()
    sub = tokens["sub"]
    assert requests.get(f"{base}/accounts/{sub}", timeout=5).json()["tokens_valid"] is True

    disc = requests.post(f"{base}/profiles/{account['profile_id']}/disconnect", timeout=5).json()
    assert disc["profile_connected"] is False
    relink = requests.get(disc["profile_relink_url"], timeout=5)
    assert relink.status_code == 200 and 'id="relink"' in relink.text
    assert requests.post(disc["profile_relink_url"], timeout=5).status_code == 200
    assert emu.profiles()[-1]["profile_connected"] is True

    fault = requests.post(base + "/faults", json={"path_prefix": "/v1/account", "status": 502}, timeout=5)
    assert fault.status_code == 201
    assert requests.get(base + "/faults", timeout=5).json()["faults"][0]["status"] == 502
    assert requests.delete(base + "/faults", timeout=5).json() == {"faults": []}

    assert requests.post(base + "/clock/advance", json={"seconds": 5}, timeout=5).status_code == 200
    log = requests.get(base + "/requests", params={"path_prefix": "/oauth/token"}, timeout=5).json()
    assert log["count"] >= 1
    assert requests.delete(base + "/requests", timeout=5).json()["count"] == 0
    assert requests.get(base + "/state", timeout=5).json()["accounts"]

    revoked = requests.post(f"{base}/accounts/{sub}/revoke", timeout=5).json()
    assert revoked["revoked"] is True and revoked["tokens_valid"] is False
    waited = requests.post(base + "/notifications/wait", json={"timeout": 2}, timeout=5).json()
    assert waited["drained"] is True


def test_concurrent_requests_are_safe(emu):
    import concurrent.futures

    conn = connect(emu)

    def write(i: int) -> int:
        return requests.post(
            conn.url(f"/v1/calendars/{conn.calendar_id}/events"),
            headers=conn.headers,
            json=timed_event(f"c{i}"),
            timeout=10,
        ).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(write, range(40)))
    assert statuses == [202] * 40
    assert len(landed(emu, conn.calendar_id)) == 40


def test_standalone_main_runs(tmp_path):
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "localdev.emulator", "--port", "0", "--seed-demo"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(__import__("pathlib").Path(__file__).parents[2]),
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("Cronofy emulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        profiles = requests.get(url + "/_emulator/accounts", timeout=5).json()["profiles"]
        assert len(profiles) == 4
        assert sum(p["provider_name"] == "google" for p in profiles) == 2
    finally:
        proc.terminate()
        proc.wait(5)


def test_unexpected_errors_become_500_json_and_the_server_survives(emu, conn, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("bug in the emulator")

    monkeypatch.setattr(oauth, "authenticate", boom)
    resp = conn.get("/v1/calendars")
    assert resp.status_code == 500 and resp.json() == {"error": "internal_error"}
    monkeypatch.undo()
    assert conn.get("/v1/calendars").status_code == 200


def test_stop_closes_kept_alive_connections():
    emu = make_emulator()
    conn = connect(emu)
    assert conn.get("/v1/userinfo").status_code == 200  # the session now holds a pooled connection
    emu.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        conn.get("/v1/userinfo")
