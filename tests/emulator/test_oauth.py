"""OAuth: consent page, code exchange, refresh rotation, expiry and revocation."""

from __future__ import annotations

import re
import urllib.parse

import pytest
import requests

from .conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    authorize_params,
    code_from,
    connect,
    consent,
    exchange,
    make_emulator,
    unique_email,
)


def _query(location: str) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)


# -- consent page ----------------------------------------------------------------------------


def test_consent_page_lists_accounts_of_the_provider(emu):
    first = emu.add_calendar_account("google", "jane.smith@example.com")
    second = emu.add_calendar_account("google", "jane.personal@gmail.com")
    ms = emu.add_calendar_account("microsoft", unique_email("ms"))
    resp = requests.get(
        emu.base_url + "/oauth/authorize",
        params=authorize_params(provider_name="google", avoid_linking="true"),
        timeout=10,
    )
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    page = resp.text
    assert '<form method="post" action="/oauth/authorize"' in page
    assert 'id="allow"' in page and 'id="deny"' in page
    assert f'value="{first["profile_id"]}"' in page and f'value="{second["profile_id"]}"' in page
    assert "jane.smith@example.com" in page and "jane.personal@gmail.com" in page
    assert ms["profile_id"] not in page
    for name in ("client_id", "redirect_uri", "scope", "state"):
        assert re.search(rf'<input type="hidden" name="{name}" value="[^"]+">', page)

    office = requests.get(
        emu.base_url + "/oauth/authorize", params=authorize_params(provider_name="office365"), timeout=10
    ).text
    assert ms["profile_id"] in office and first["profile_id"] not in office


@pytest.mark.parametrize(
    "override",
    [
        {"client_id": "someone-else"},
        {"redirect_uri": None},
        {"scope": None},
        {"scope": "read_events launch_missiles"},
        {"response_type": "token"},
        {"provider_name": "myspace"},
    ],
)
def test_consent_page_rejects_bad_requests_without_redirect(emu, override):
    resp = requests.get(
        emu.base_url + "/oauth/authorize",
        params=authorize_params(**override),
        allow_redirects=False,
        timeout=10,
    )
    assert resp.status_code == 400
    assert "Location" not in resp.headers
    assert 'id="error"' in resp.text


def test_allow_and_deny_redirect_with_state(emu):
    account = emu.add_calendar_account("apple", unique_email("apple"))
    allowed = consent(emu, account["profile_id"], state="xyz 1")
    assert allowed.status_code == 302
    location = allowed.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    assert _query(location)["state"] == ["xyz 1"]
    assert len(_query(location)["code"][0]) >= 20

    denied = consent(emu, account["profile_id"], decision="deny", state="xyz 2")
    assert denied.status_code == 302
    assert _query(denied.headers["Location"]) == {"error": ["access_denied"], "state": ["xyz 2"]}


def test_allow_requires_a_choice_when_several_accounts_match(emu):
    # two of its own: the module's emulator is shared, and other tests may run on another worker
    emu.add_calendar_account("google", unique_email("g"))
    emu.add_calendar_account("google", unique_email("g"))
    resp = consent(emu, None, provider_name="google")
    assert resp.status_code == 400
    assert 'id="error"' in resp.text and 'class="account"' in resp.text


def test_allow_with_a_single_matching_account_needs_no_choice():
    emu = make_emulator()
    try:
        only = emu.add_calendar_account("microsoft", unique_email("ms"))
        emu.add_calendar_account("google", unique_email("g"))
        resp = consent(emu, None, provider_name="exchange")
        assert resp.status_code == 302
        token = exchange(emu, code_from(resp.headers["Location"])).json()
        assert token["linking_profile"] == {
            "provider_name": "exchange",
            "provider_service": "office365",
            "profile_id": only["profile_id"],
            "profile_name": only["profile_name"],
        }
    finally:
        emu.stop()


# -- token endpoint --------------------------------------------------------------------------


def test_token_response_shape_and_single_use_codes(emu):
    account = emu.add_calendar_account("google", unique_email())
    code = code_from(consent(emu, account["profile_id"]).headers["Location"])
    resp = exchange(emu, code)
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {
        "token_type",
        "access_token",
        "expires_in",
        "refresh_token",
        "scope",
        "account_id",
        "sub",
        "linking_profile",
    }
    assert body["token_type"] == "bearer" and len(body["access_token"]) == 32
    assert body["expires_in"] == 3600 and body["sub"] == body["account_id"] and body["sub"].startswith("acc_")
    assert body["linking_profile"]["profile_id"] == account["profile_id"]
    assert body["linking_profile"]["profile_id"].startswith("pro_")

    again = exchange(emu, code)
    assert again.status_code == 400 and again.json() == {"error": "invalid_grant"}


def test_token_form_encoded_body_is_accepted(emu):
    account = emu.add_calendar_account("google", unique_email())
    code = code_from(consent(emu, account["profile_id"]).headers["Location"])
    resp = requests.post(
        emu.base_url + "/oauth/token",
        timeout=10,
        data={
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
        },
    )
    assert resp.status_code == 200


def test_redirect_uri_mismatch_and_unknown_code_are_invalid_grant(emu):
    account = emu.add_calendar_account("google", unique_email())
    code = code_from(consent(emu, account["profile_id"]).headers["Location"])
    assert exchange(emu, code, redirect_uri=REDIRECT_URI + "/other").json() == {"error": "invalid_grant"}
    # the code was spent by the failed attempt
    assert exchange(emu, code).status_code == 400
    assert exchange(emu, "not-a-code").json() == {"error": "invalid_grant"}


def test_wrong_client_credentials_are_invalid_client(emu):
    account = emu.add_calendar_account("google", unique_email())
    code = code_from(consent(emu, account["profile_id"]).headers["Location"])
    resp = exchange(emu, code, client_secret="wrong")
    assert resp.status_code == 401 and resp.json() == {"error": "invalid_client"}


def test_code_expires_after_ten_minutes():
    emu = make_emulator()
    try:
        account = emu.add_calendar_account("google", unique_email())
        code = code_from(consent(emu, account["profile_id"]).headers["Location"])
        emu.advance_clock(601)
        assert exchange(emu, code).json() == {"error": "invalid_grant"}
    finally:
        emu.stop()


def test_expired_access_token_gets_401_then_refresh_works():
    emu = make_emulator(access_token_ttl=60)
    try:
        conn = connect(emu)
        assert conn.get("/v1/calendars").status_code == 200
        emu.advance_clock(61)
        expired = conn.get("/v1/calendars")
        assert expired.status_code == 401
        assert expired.headers["WWW-Authenticate"].startswith("Bearer")
        assert expired.content == b""
        refreshed = conn.refresh()
        assert refreshed.status_code == 200
        assert set(refreshed.json()) == {"token_type", "access_token", "expires_in", "refresh_token", "scope"}
        assert conn.get("/v1/calendars").status_code == 200
    finally:
        emu.stop()


def test_refresh_token_rotation_invalidates_the_old_one(emu):
    conn = connect(emu)
    old_refresh = conn.tokens["refresh_token"]
    assert conn.refresh().status_code == 200
    assert conn.tokens["refresh_token"] != old_refresh
    stale = requests.post(
        emu.base_url + "/oauth/token",
        timeout=10,
        json={
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "grant_type": "refresh_token",
            "refresh_token": old_refresh,
        },
    )
    assert stale.status_code == 400 and stale.json() == {"error": "invalid_grant"}
    assert conn.refresh().status_code == 200


def test_without_rotation_the_refresh_token_is_reused():
    emu = make_emulator(rotate_refresh_tokens=False)
    try:
        conn = connect(emu)
        first = conn.tokens["refresh_token"]
        assert conn.refresh().status_code == 200 and conn.tokens["refresh_token"] == first
        assert conn.refresh().status_code == 200
    finally:
        emu.stop()


# -- revocation ------------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["refresh_token", "access_token", "sub"])
def test_revoke_kills_every_token_and_channel(emu, receiver, by):
    conn = connect(emu)
    assert conn.post("/v1/channels", json={"callback_url": receiver.url("/revoke")}).status_code == 200
    form = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    form.update({"sub": conn.sub} if by == "sub" else {"token": conn.tokens[by]})
    resp = requests.post(emu.base_url + "/oauth/token/revoke", data=form, timeout=10)
    assert resp.status_code == 200 and resp.content == b""
    assert conn.get("/v1/userinfo").status_code == 401
    assert conn.refresh().json() == {"error": "invalid_grant"}
    state = emu.account_state(conn.sub)
    assert state["revoked"] is True and state["channels"] == [] and state["tokens_valid"] is False
    # already revoked: still 200
    assert requests.post(emu.base_url + "/oauth/token/revoke", data=form, timeout=10).status_code == 200


def test_reauthorizing_after_revoke_gives_a_working_account(emu):
    conn = connect(emu)
    emu.revoke_account(conn.sub)
    assert conn.get("/v1/calendars").status_code == 401
    code = code_from(consent(emu, conn.account["profile_id"]).headers["Location"])
    tokens = exchange(emu, code).json()
    assert tokens["sub"] == conn.sub
    resp = requests.get(
        emu.base_url + "/v1/calendars",
        timeout=10,
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert resp.status_code == 200
    assert emu.account_state(conn.sub)["revoked"] is False


def test_revoke_requires_client_credentials(emu):
    conn = connect(emu)
    resp = requests.post(
        emu.base_url + "/oauth/token/revoke",
        timeout=10,
        data={"client_id": CLIENT_ID, "client_secret": "nope", "token": conn.tokens["refresh_token"]},
    )
    assert resp.status_code == 401
    assert conn.get("/v1/userinfo").status_code == 200


def test_profile_revoke_returns_202_and_detaches_calendars(emu):
    conn = connect(emu)
    assert conn.post(f"/v1/profiles/{conn.account['profile_id']}/revoke").status_code == 202
    assert conn.get("/v1/calendars").json()["calendars"] == []
    assert conn.post("/v1/profiles/pro_unknown/revoke").status_code == 404


def test_unknown_bearer_is_401(emu):
    resp = requests.get(emu.base_url + "/v1/calendars", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert resp.status_code == 401 and "WWW-Authenticate" in resp.headers
    assert requests.get(emu.base_url + "/v1/calendars", timeout=10).status_code == 401
