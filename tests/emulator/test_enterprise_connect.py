"""Enterprise Connect in the emulator: the administrator's authorization, service-account tokens,
delegated-access requests with their limits, callbacks with codes or errors, and strictness."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from .conftest import CLIENT_ID, CLIENT_SECRET, exchange, make_emulator

ADMIN_REDIRECT = "http://app.test/v1/enterprise-connect/oauth/callback"
SA_SCOPE = "service_account/accounts/manage"
DELEGATED = "read_account list_calendars read_events create_event delete_event"


class CallbackReceiver:
    """Where Cronofy calls back per member: records the JSON bodies."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])  # answers to give first (then 200)
        self.received: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._cond:
                    receiver.received.append({"path": self.path, "json": json.loads(raw),
                                              "content_type": self.headers.get("Content-Type")})
                    receiver._cond.notify_all()
                with receiver._cond:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if status == 503:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/members/callback"

    def wait_for(self, n: int, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < n:
                if not self._cond.wait(deadline - time.monotonic()):
                    break
            return list(self.received)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def ec():
    emulator = make_emulator()
    emulator.add_enterprise_domain("google", "sunbright.example")
    receiver = CallbackReceiver()
    yield emulator, receiver
    receiver.close()
    emulator.stop()


def _admin_params(**overrides: str) -> dict[str, str]:
    params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": ADMIN_REDIRECT,
              "scope": SA_SCOPE, "delegated_scope": DELEGATED, "state": "org-state"}
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def _service_account(emu, domain: str = "sunbright.example") -> dict[str, Any]:
    form = _admin_params() | {"decision": "allow", "domain": domain}
    resp = requests.post(emu.base_url + "/enterprise_connect/oauth/authorize", data=form, allow_redirects=False,
                         timeout=10)
    assert resp.status_code == 302, resp.text
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(resp.headers["Location"]).query)
    assert query["state"] == ["org-state"]
    tokens = exchange(emu, query["code"][0], redirect_uri=ADMIN_REDIRECT)
    assert tokens.status_code == 200, tokens.text
    return tokens.json()


def _ask(emu, tokens: dict[str, Any], body: Any) -> requests.Response:
    return requests.post(emu.base_url + "/v1/service_account_authorizations", json=body, timeout=10,
                         headers={"Authorization": f"Bearer {tokens['access_token']}"})


def _entry(receiver, email: str, state: str | None = "s1", scope: str = DELEGATED) -> dict[str, Any]:
    entry = {"email": email, "callback_url": receiver.url(), "scope": scope}
    if state is not None:
        entry["state"] = state
    return entry


def test_admin_page_offers_domains_and_validates_the_request(ec):
    emu, _ = ec
    page = requests.get(emu.base_url + "/enterprise_connect/oauth/authorize", params=_admin_params(), timeout=10)
    assert page.status_code == 200 and "sunbright.example" in page.text and 'name="delegated_scope"' in page.text
    for bad in ({"scope": "read_events"}, {"delegated_scope": None}, {"delegated_scope": "everything"},
                {"client_id": "someone-else"}, {"response_type": "token"}, {"redirect_uri": "not-a-url"}):
        resp = requests.get(emu.base_url + "/enterprise_connect/oauth/authorize", params=_admin_params(**bad),
                            timeout=10)
        assert resp.status_code == 400, bad


def test_deny_redirects_with_access_denied(ec):
    emu, _ = ec
    form = _admin_params() | {"decision": "deny"}
    resp = requests.post(emu.base_url + "/enterprise_connect/oauth/authorize", data=form, allow_redirects=False,
                         timeout=10)
    assert resp.status_code == 302
    assert "error=access_denied" in resp.headers["Location"] and "state=org-state" in resp.headers["Location"]


def test_service_account_tokens_are_short_lived_single_use_code_and_refresh(ec):
    emu, _ = ec
    tokens = _service_account(emu)
    assert tokens["expires_in"] == 1800 and tokens["service_account_id"].startswith("ser_")
    assert "sub" not in tokens and "linking_profile" not in tokens
    # a service account cannot read calendars itself
    resp = requests.get(emu.base_url + "/v1/calendars", timeout=10,
                        headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert resp.status_code == 401
    refreshed = requests.post(emu.base_url + "/oauth/token", timeout=10, json={
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200 and refreshed.json()["expires_in"] == 1800
    emu.advance_clock(1801)
    expired = _ask(emu, tokens, _entry(ec[1], "a@sunbright.example"))
    assert expired.status_code == 401


def test_code_is_single_use_and_bound_to_redirect_uri(ec):
    emu, _ = ec
    form = _admin_params() | {"decision": "allow", "domain": "sunbright.example"}
    resp = requests.post(emu.base_url + "/enterprise_connect/oauth/authorize", data=form, allow_redirects=False,
                         timeout=10)
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(resp.headers["Location"]).query)["code"][0]
    assert exchange(emu, code, redirect_uri="http://elsewhere.test/cb").status_code == 400
    assert exchange(emu, code, redirect_uri=ADMIN_REDIRECT).status_code == 400  # already spent


def test_members_get_codes_others_get_errors(ec):
    emu, receiver = ec
    emu.add_calendar_account("google", "ana@sunbright.example")
    emu.add_calendar_account("google", "bo@gmail.com")
    tokens = _service_account(emu)
    resp = _ask(emu, tokens, {"service_account_authorizations": [
        _entry(receiver, "ana@sunbright.example", "s-ana"),
        _entry(receiver, "ghost@sunbright.example", "s-ghost"),
        _entry(receiver, "bo@gmail.com", "s-bo"),
    ]})
    assert resp.status_code == 202 and resp.content == b""
    got = {r["json"]["authorization"]["state"]: r["json"]["authorization"] for r in receiver.wait_for(3)}
    assert set(got) == {"s-ana", "s-ghost", "s-bo"}
    assert got["s-ghost"]["error"] == "unknown_email" and "code" not in got["s-ghost"]
    assert got["s-bo"]["error"] == "not_in_domain" and "code" not in got["s-bo"]
    code = got["s-ana"]["code"]
    # the member's code is redeemed with the callback URL as redirect_uri, and gives normal user tokens
    member = exchange(emu, code, redirect_uri=receiver.url())
    assert member.status_code == 200, member.text
    body = member.json()
    assert body["sub"].startswith("acc_") and body["linking_profile"]["profile_name"] == "ana@sunbright.example"
    cals = requests.get(emu.base_url + "/v1/calendars", headers={"Authorization": f"Bearer {body['access_token']}"},
                        timeout=10)
    assert cals.status_code == 200 and cals.json()["calendars"]


def test_single_format_works(ec):
    emu, receiver = ec
    emu.add_calendar_account("google", "cy@sunbright.example")
    tokens = _service_account(emu)
    assert _ask(emu, tokens, _entry(receiver, "cy@sunbright.example", "one")).status_code == 202
    (only,) = receiver.wait_for(1)
    assert only["json"]["authorization"]["state"] == "one" and only["json"]["authorization"]["code"]


def test_limits_and_strictness(ec):
    emu, receiver = ec
    tokens = _service_account(emu)
    many = [_entry(receiver, f"m{i}@sunbright.example") for i in range(51)]
    too_many = _ask(emu, tokens, {"service_account_authorizations": many})
    assert too_many.status_code == 422 and "service_account_authorizations" in too_many.json()["errors"]
    assert _ask(emu, tokens, {"service_account_authorizations": many[:50]}).status_code == 202
    cases = [
        {"service_account_authorizations": []},
        {"service_account_authorizations": many[:2], "email": "x@sunbright.example"},  # mixed formats
        _entry(receiver, "not-an-email"),
        {"callback_url": receiver.url(), "scope": DELEGATED},  # no email
        _entry(receiver, "a@sunbright.example") | {"callback_url": "/relative"},
        _entry(receiver, "a@sunbright.example", scope="read_events create_calendar"),  # not delegated
        {"service_account_authorizations": [_entry(receiver, "a@sunbright.example"), "nope"]},
    ]
    for body in cases:
        resp = _ask(emu, tokens, body)
        assert resp.status_code == 422, (body, resp.text)
        assert "errors" in resp.json()
    assert requests.post(emu.base_url + "/v1/service_account_authorizations", json=_entry(receiver, "a@x.example"),
                         timeout=10).status_code == 401
    # nothing of a refused request was called back: only the 50 accepted ones
    time.sleep(0.3)
    assert len(receiver.wait_for(50)) == 50
    assert len(emu.enterprise_state()["callbacks"]) == 50


def test_revoked_service_account_cannot_ask(ec):
    emu, receiver = ec
    tokens = _service_account(emu)
    resp = requests.post(emu.base_url + "/oauth/token/revoke", timeout=10, json={
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "token": tokens["refresh_token"]})
    assert resp.status_code == 200
    assert _ask(emu, tokens, _entry(receiver, "a@sunbright.example")).status_code == 401
    assert emu.enterprise_state()["service_accounts"][0]["revoked"] is True


def test_microsoft_domain_reaches_exchange_accounts_only(ec):
    emu, receiver = ec
    emu.add_enterprise_domain("microsoft", "contoso.example")
    emu.add_calendar_account("microsoft", "dee@contoso.example")
    emu.add_calendar_account("google", "eve@contoso.example")
    tokens = _service_account(emu, "contoso.example")
    _ask(emu, tokens, {"service_account_authorizations": [_entry(receiver, "dee@contoso.example", "dee"),
                                                          _entry(receiver, "eve@contoso.example", "eve")]})
    got = {r["json"]["authorization"]["state"]: r["json"]["authorization"] for r in receiver.wait_for(2)}
    assert "code" in got["dee"] and got["eve"]["error"] == "unknown_email"


def test_callbacks_are_retried_after_5xx_but_not_after_4xx(ec):
    emu, _ = ec
    emu.add_calendar_account("google", "fy@sunbright.example")
    emu.add_calendar_account("google", "gu@sunbright.example")
    flaky = CallbackReceiver(statuses=[503, 503, 409])
    try:
        tokens = _service_account(emu)
        _ask(emu, tokens, {"service_account_authorizations": [_entry(flaky, "fy@sunbright.example", "fy"),
                                                              _entry(flaky, "gu@sunbright.example", "gu")]})
        assert emu.enterprise.deliveries.wait_idle(20)
        log = {json.loads(e["body"])["authorization"]["state"]: e for e in emu.enterprise.deliveries.log}
        assert (log["fy"]["attempts"], log["fy"]["status"]) == (3, 409)  # 503, 503, then a final 409
        assert (log["gu"]["attempts"], log["gu"]["status"]) == (1, 200)
        assert len(flaky.received) == 4
    finally:
        flaky.close()


def test_paused_callbacks_wait(ec):
    emu, receiver = ec
    emu.add_calendar_account("google", "hu@sunbright.example")
    tokens = _service_account(emu)
    emu.enterprise.deliveries.pause()
    try:
        _ask(emu, tokens, _entry(receiver, "hu@sunbright.example"))
        assert not emu.enterprise.deliveries.wait_idle(0.5) and receiver.received == []
    finally:
        emu.enterprise.deliveries.resume()
    assert emu.enterprise.deliveries.wait_idle(10) and len(receiver.received) == 1
