"""Every failed OAuth completion ends in a clean redirect with a reason, and stores nothing."""

import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from calsync import wiring
from localdev import browser


def only_oauth_leftovers(stack):
    """Nothing but (possibly) unused OAuth state records (and the shared rate limiter) may be stored."""
    return [i for i in stack.raw_items() if not i["pk"]["S"].startswith(("OAUTHSTATE#", "RATELIMIT#"))]


def callback_url(stack, **params):
    return stack.url(f"/v1/calendar/oauth/callback?{urlencode(params)}")


def redirect_of(session, url):
    resp = session.get(url, allow_redirects=False)
    assert resp.status_code == 302, resp.text
    location = resp.headers["Location"]
    assert location.startswith(stack_web_app(session))
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def stack_web_app(session):
    return session.web_app  # set by the fixture below


@pytest.fixture
def s(stack, jane):
    jane["session"].web_app = stack.url("/app/")
    return jane["session"]


def test_access_denied_is_a_clean_redirect(stack, jane, s):
    result = browser.connect(s, stack.base_url, "google", jane["work"]["profile_id"], allow=False)
    assert result == {"calendar_sync": "error", "reason": "access_denied"}
    assert only_oauth_leftovers(stack) == []


def test_forged_state(stack, s):
    url = browser.start_connect(s, stack.base_url, "google")
    state = parse_qs(urlsplit(url).query)["state"][0]
    forged = state[:-3] + ("AAA" if not state.endswith("AAA") else "BBB")
    assert redirect_of(s, callback_url(stack, code="c", state=forged)) == {
        "calendar_sync": "error", "reason": "invalid_state"}
    assert redirect_of(s, callback_url(stack, code="c")) == {"calendar_sync": "error", "reason": "invalid_state"}
    assert only_oauth_leftovers(stack) == []


def test_expired_state(stack, jane, s, monkeypatch):
    url = browser.start_connect(s, stack.base_url, "google")
    signer = wiring.connection_service().signer
    monkeypatch.setattr(signer, "_clock", lambda: time.time() + 3600)
    result = browser.outcome(browser.consent(s, url, jane["work"]["profile_id"]))
    assert result == {"calendar_sync": "error", "reason": "state_expired"}
    assert only_oauth_leftovers(stack) == []
    assert stack.emulator.count_requests(path_prefix="/oauth/token") == 0


def test_replayed_state(stack, jane, s):
    url = browser.start_connect(s, stack.base_url, "google")
    binding = s.cookies.get("sn_calendar_oauth")
    callback = browser.consent(s, url, jane["work"]["profile_id"], follow=False).headers["Location"]
    assert redirect_of(s, callback)["calendar_sync"] == "choose_calendar"
    before = stack.raw_items()
    # The first callback cleared the binding cookie: a plain reload is refused...
    assert redirect_of(s, callback)["reason"] == "state_not_for_this_browser"
    # ...and even with the cookie put back, the state was single-use
    s.cookies.set("sn_calendar_oauth", binding, path="/v1/calendar/oauth")
    assert redirect_of(s, callback) == {"calendar_sync": "error", "reason": "state_used"}
    assert stack.raw_items() == before


def test_state_of_another_user_is_refused(stack, jane, s):
    # Jane starts a flow; her state ends up in Bob's browser (a link he was sent)
    url = browser.start_connect(s, stack.base_url, "google")
    bob = stack.browser("u_bob", "org_sunbright")
    browser.start_connect(bob, stack.base_url, "google")  # Bob has a flow (and cookie) of his own
    bob.web_app = stack.url("/app/")
    callback = browser.consent(s, url, jane["work"]["profile_id"], follow=False).headers["Location"]
    assert redirect_of(bob, callback) == {"calendar_sync": "error", "reason": "state_not_for_this_browser"}
    assert only_oauth_leftovers(stack) == []


def test_failing_code_exchange(stack, jane, s):
    url = browser.start_connect(s, stack.base_url, "google")
    callback = browser.consent(s, url, jane["work"]["profile_id"], follow=False).headers["Location"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    query["code"] = "not-a-code-cronofy-issued"
    assert redirect_of(s, callback_url(stack, **query)) == {"calendar_sync": "error",
                                                            "reason": "code_exchange_failed"}
    assert only_oauth_leftovers(stack) == []


def test_cronofy_down_during_exchange(stack, jane, s):
    url = browser.start_connect(s, stack.base_url, "google")
    stack.emulator.add_fault(path_prefix="/oauth/token", status=503, count=10)
    result = browser.outcome(browser.consent(s, url, jane["work"]["profile_id"]))
    assert result == {"calendar_sync": "error", "reason": "calendar_service_unavailable"}
    assert only_oauth_leftovers(stack) == []


def test_account_without_a_writable_calendar(stack):
    account = stack.emulator.add_calendar_account("apple", "ro@icloud.example", calendars=[
        {"name": "Shared schedule", "readonly": True}])
    session = stack.browser("u_ro", "org_1")
    result = browser.connect(session, stack.base_url, "apple", account["profile_id"])
    assert result == {"calendar_sync": "error", "reason": "no_writable_calendar"}
    assert only_oauth_leftovers(stack) == []
    # and the authorization Cronofy issued was revoked again
    assert stack.emulator.count_requests(path_prefix="/oauth/token/revoke") == 1


def test_open_redirects_are_refused(stack, s):
    for bad in ("https://evil.example/", "//evil.example", "profile", "/\\evil.example", "/..//evil.example",
                "/\r\nSet-Cookie: pwn=1", "/\t/evil.example", "/a b", "/\u2215evil.example", "/profile#tab"):
        resp = s.post(stack.url("/v1/calendar/connect"), json={"provider": "google", "return_to": bad})
        assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_return_to"
    resp = s.post(stack.url("/v1/calendar/connect"), json={"provider": "yahoo"})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_request"


def test_return_to_is_honoured(stack, jane, s):
    url = browser.start_connect(s, stack.base_url, "google", return_to="/settings/calendar")
    resp = browser.consent(s, url, jane["work"]["profile_id"])
    assert urlsplit(resp.url).path == "/app/settings/calendar"
    assert browser.outcome(resp)["calendar_sync"] == "choose_calendar"


def test_the_outcome_in_the_query_is_the_true_one(stack, jane, s):
    """A return_to that carries a query keeps it; an outcome it already carries is replaced, never the
    first of two values a web app would read."""
    url = browser.start_connect(s, stack.base_url, "google", return_to="/profile?tab=sync&calendar_sync=connected")
    resp = browser.consent(s, url, jane["work"]["profile_id"], allow=False)
    query = parse_qs(urlsplit(resp.url).query)
    assert query["tab"] == ["sync"] and query["calendar_sync"] == ["error"]


def test_connecting_while_the_disconnect_runs_says_so(stack, jane, s):
    browser.connect(s, stack.base_url, "google", jane["work"]["profile_id"])
    assert s.delete(stack.url("/v1/calendar/connection")).status_code == 202  # not drained: still running
    resp = s.post(stack.url("/v1/calendar/connect"), json={"provider": "google"})
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "disconnect_in_progress"
    stack.drain()
    assert s.post(stack.url("/v1/calendar/connect"), json={"provider": "google"}).status_code == 200


def test_a_non_ascii_state_signature_is_an_invalid_state_not_an_error(stack, s):
    url = browser.start_connect(s, stack.base_url, "google")
    state = parse_qs(urlsplit(url).query)["state"][0]
    body = state.split(".")[0]
    for signature in ("é" * 43, "sig\u2603", "ü"):
        assert redirect_of(s, callback_url(stack, code="c", state=f"{body}.{signature}")) == {
            "calendar_sync": "error", "reason": "invalid_state"}
    assert only_oauth_leftovers(stack) == []


def test_a_token_response_that_fails_validation_revokes_that_authorization(stack, jane, s):
    import json

    # Cronofy answers the code exchange 200 but without `sub` (the body is unusable)
    def strip_sub(resp, *args, **kwargs):
        if resp.request.method == "POST" and resp.request.url.endswith("/oauth/token") and resp.status_code == 200:
            data = resp.json()
            minted["refresh_token"] = data["refresh_token"]
            minted["sub"] = data.pop("sub")
            data.pop("account_id", None)
            resp._content = json.dumps(data).encode()
        return resp

    minted = {}
    session = wiring.cronofy_app().session
    session.hooks["response"].append(strip_sub)
    try:
        result = browser.connect(s, stack.base_url, "google", jane["work"]["profile_id"])
    finally:
        session.hooks["response"].remove(strip_sub)
    assert result == {"calendar_sync": "error", "reason": "code_exchange_failed"}
    # The authorization that was granted is revoked at Cronofy, and nothing is stored
    assert minted["sub"]
    assert stack.emulator.account_state(minted["sub"])["revoked"] is True
    assert only_oauth_leftovers(stack) == []


def test_a_callback_out_of_time_still_revokes_what_it_half_made(stack, jane, s, monkeypatch):
    """The flow's Cronofy time runs out (a slow userinfo): the callback redirects with
    calendar_service_unavailable, and the grant it just got is still revoked (clean-up has its own time)."""
    import importlib

    callback = importlib.import_module("functions.oauth_callback.app")
    monkeypatch.setattr(callback, "route_seconds", lambda context: 0.6)
    stack.emulator.add_fault(path_prefix="/v1/userinfo", status=None, latency_ms=1200, count=1)
    url = browser.start_connect(s, stack.base_url, "google")
    result = browser.outcome(browser.consent(s, url, jane["work"]["profile_id"]))
    assert result == {"calendar_sync": "error", "reason": "calendar_service_unavailable"}
    assert stack.emulator.count_requests(path_prefix="/oauth/token/revoke") == 1
    assert only_oauth_leftovers(stack) == []
