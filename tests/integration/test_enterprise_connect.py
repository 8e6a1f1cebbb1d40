"""Enterprise Connect through the real handlers against the emulator: the admin's authorization,
members connected by the admin beside members who connected themselves, per-member status,
refusals (forged/replayed state, ended org), and ending it."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlsplit

import pytest

from localdev import enterprise_flow as ec
from tests.helpers import connect, managed_events, milestone, push

ORG = "org_sunbright"
DOMAIN = "sunbright.example"


@pytest.fixture
def admin(stack):
    stack.emulator.add_enterprise_domain("google", DOMAIN)
    return stack.browser("u_admin", ORG, roles=["admin"])


@pytest.fixture
def crew(stack):
    """Three crew members in the domain (one with a primary and a second calendar), one outside it."""
    accounts = {
        "u_ana": stack.emulator.add_calendar_account("google", f"ana@{DOMAIN}", calendars=[
            {"name": "Other", "primary": False}, {"name": f"ana@{DOMAIN}", "primary": True}]),
        "u_bo": stack.emulator.add_calendar_account("google", f"bo@{DOMAIN}"),
        "u_cy": stack.emulator.add_calendar_account("google", "cy@gmail.com"),
    }
    return accounts


def _authorized(stack, admin) -> None:
    resp = ec.authorize(admin, stack.base_url, ORG, DOMAIN)
    assert resp.status_code == 200, resp.text
    assert ec.outcome(resp) == {"enterprise_connect": "connected"}, resp.url


def _member_rows(stack, admin) -> dict[str, dict]:
    return {m["user_id"]: m for m in ec.status(admin, stack.base_url, ORG)["members"]}


def test_admin_connects_the_crew_and_members_see_it(stack, admin, crew, jane, service_logs):
    jane_cal = connect(stack, jane["session"], "google", jane["work"], "Installs")  # connected herself
    push(stack, milestone("m1", 1, ["u_ana", "u_bo", "u_cy", "u_jane"]))
    _authorized(stack, admin)
    resp = ec.request_members(admin, stack.base_url, ORG, [
        ("u_ana", f"ana@{DOMAIN}"), ("u_bo", f"bo@{DOMAIN}"), ("u_cy", "cy@gmail.com"),
        ("u_jane", "jane.smith@example.com")])
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["cronofy_requests"] == 1 and body["requested"] == 3
    assert {m["user_id"]: m["status"] for m in body["members"]}["u_jane"] == "skipped"
    ec.settle(stack)
    rows = _member_rows(stack, admin)
    assert rows["u_ana"]["status"] == "connected" and rows["u_ana"]["connection_state"] == "connected"
    assert rows["u_ana"]["calendar_name"] == f"ana@{DOMAIN}"  # the primary calendar, not the first
    assert rows["u_bo"]["status"] == "connected"
    assert (rows["u_cy"]["status"], rows["u_cy"]["reason"]) == ("failed", "not_in_domain")
    assert "u_jane" not in rows  # skipped: she connected herself
    # the member's own status says who connected it; backfill done, milestone on the calendar
    ana = stack.browser("u_ana", ORG)
    mine = ana.get(stack.url("/v1/calendar/connection")).json()
    assert mine["state"] == "connected" and mine["connected_by"] == "enterprise_connect"
    assert mine["backfill"]["status"] == "succeeded"
    assert "sn-m1" in managed_events(stack, mine["calendar"]["id"])
    assert "connected_by" not in jane["session"].get(stack.url("/v1/calendar/connection")).json()
    # milestone push reaches admin-connected members like anyone else
    push(stack, milestone("m1", 2, ["u_ana", "u_jane"], name="Install"))
    assert managed_events(stack, mine["calendar"]["id"])["sn-m1"]["summary"].startswith("Install")
    assert managed_events(stack, jane_cal)["sn-m1"]["summary"].startswith("Install")
    # no token or code of the member or the service account in any log line, none unencrypted at rest
    secrets = _issued_secrets(stack)
    assert secrets
    logs = service_logs.getvalue()
    raw = json.dumps([{k: list(v.values())[0] for k, v in item.items() if k != "ciphertext"}
                      for item in stack.raw_items()], default=str)
    for secret in secrets:
        assert secret not in logs
        assert secret not in raw


def _issued_secrets(stack) -> set[str]:
    """Every access and refresh token (members' and the service account's) and every member code issued."""
    state, enterprise = stack.emulator.state, stack.emulator.enterprise
    found = set(state.access_tokens) | set(state.refresh_tokens) | set(enterprise.access) | set(enterprise.refresh)
    for note in stack.emulator.enterprise.deliveries.log:
        auth = json.loads(note["body"])["authorization"]
        if "code" in auth:
            found.add(auth["code"])
    return {s for s in found if len(s) >= 16}


def test_service_account_tokens_are_encrypted_for_the_org(stack, admin):
    _authorized(stack, admin)
    items = stack.raw_items()
    tokens = [i for i in items if i["pk"]["S"] == f"ORG#{ORG}" and i["sk"]["S"] == "ENTERPRISE_TOKENS"]
    assert len(tokens) == 1 and "B" in tokens[0]["ciphertext"]
    sa_tokens = set(stack.emulator.enterprise.access) | set(stack.emulator.enterprise.refresh)
    dumped = json.dumps(items, default=lambda b: base64.b64encode(b).decode())
    assert sa_tokens and not any(t in dumped for t in sa_tokens)
    # the ciphertext does not open as a user's tokens (encryption context: purpose and org)
    from calsync import wiring

    with pytest.raises(Exception):  # noqa: B017 - KMS InvalidCiphertextException
        wiring.vault().open(ORG, bytes(tokens[0]["ciphertext"]["B"]))


def test_only_admins_of_the_org(stack, admin):
    member = stack.browser("u_ana", ORG)
    assert member.post(stack.url(f"/v1/orgs/{ORG}/enterprise-connect"), json={}).status_code == 403
    other_admin = stack.browser("u_x", "org_other", roles=["admin"])
    assert other_admin.post(stack.url(f"/v1/orgs/{ORG}/enterprise-connect"), json={}).status_code == 403
    assert other_admin.get(stack.url(f"/v1/orgs/{ORG}/enterprise-connect")).status_code == 403
    assert member.post(stack.url(f"/v1/orgs/{ORG}/enterprise-connect/members"),
                       json={"members": [{"user_id": "u_a", "email": "a@b.example"}]}).status_code == 403


def test_bad_member_requests_are_clear_4xx(stack, admin):
    url = stack.url(f"/v1/orgs/{ORG}/enterprise-connect/members")
    one = [{"user_id": "u_a", "email": f"a@{DOMAIN}"}]
    resp = admin.post(url, json={"members": one})
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "enterprise_connect_not_active"
    _authorized(stack, admin)
    cases = {
        "invalid_request": [{"members": []}, {"members": [{"user_id": "u_a"}]},
                            {"members": [{"user_id": f"u{i}", "email": f"u{i}@{DOMAIN}"} for i in range(301)]},
                            {"members": [{"user_id": "bad id/", "email": f"a@{DOMAIN}"}]}],
        "invalid_email": [{"members": [{"user_id": "u_a", "email": "not-an-email"}]}],
        "duplicate_member": [{"members": one + one}],
    }
    for code, bodies in cases.items():
        for body in bodies:
            resp = admin.post(url, json=body)
            assert resp.status_code == 422 and resp.json()["error"]["code"] == code, (body, resp.text)
    assert stack.emulator.enterprise_state()["service_accounts"][0]["requests"] == 0


def test_forged_and_replayed_org_state_are_refused(stack, admin):
    start = admin.post(stack.url(f"/v1/orgs/{ORG}/enterprise-connect"), json={})
    url = start.json()["authorization_url"]
    from urllib.parse import parse_qs, urlsplit

    state = parse_qs(urlsplit(url).query)["state"][0]
    callback = stack.url("/v1/enterprise-connect/oauth/callback")
    forged = state[:-3] + ("AAA" if not state.endswith("AAA") else "BBB")
    resp = admin.get(callback, params={"state": forged, "code": "x" * 32}, allow_redirects=False)
    assert resp.status_code == 302 and "reason=invalid_state" in resp.headers["Location"]
    # the genuine one, completed through the page, works once
    resp = ec.authorize(admin, stack.base_url, ORG, DOMAIN, follow=False)
    location = resp.headers["Location"]
    first = admin.get(location, allow_redirects=False)
    assert "enterprise_connect=connected" in first.headers["Location"]
    replay_state = parse_qs(urlsplit(location).query)["state"][0]
    again = admin.get(callback, params={"state": replay_state, "code": "y" * 32}, allow_redirects=False)
    assert "reason=state_not_for_this_browser" in again.headers["Location"] or \
        "reason=state_used" in again.headers["Location"]
    # another browser (no binding cookie) cannot complete a state it did not start
    start2 = admin.post(stack.url(f"/v1/orgs/{ORG}/enterprise-connect"), json={})
    state2 = parse_qs(urlsplit(start2.json()["authorization_url"]).query)["state"][0]
    thief = stack.browser("u_thief", ORG, roles=["admin"])
    stolen = thief.get(callback, params={"state": state2, "code": "z" * 32}, allow_redirects=False)
    assert "reason=state_not_for_this_browser" in stolen.headers["Location"]


def test_forged_member_callback_is_refused_and_stores_nothing(stack, admin, crew):
    _authorized(stack, admin)
    before = len(stack.raw_items())
    url = stack.url("/v1/enterprise-connect/members/callback")
    import requests

    resp = requests.post(url, json={"authorization": {"code": "c" * 32, "state": "e30.forged"}}, timeout=10)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "invalid_state"
    assert requests.post(url, json={"nope": 1}, timeout=10).status_code == 422
    assert len(stack.raw_items()) == before


def test_member_callback_after_the_org_ended_is_refused(stack, admin, crew):
    _authorized(stack, admin)
    stack.emulator.enterprise.deliveries.pause()  # hold Cronofy's callbacks back
    try:
        resp = ec.request_members(admin, stack.base_url, ORG, [("u_ana", f"ana@{DOMAIN}")])
        assert resp.status_code == 202
        ended = admin.delete(stack.url(f"/v1/orgs/{ORG}/enterprise-connect"))
        assert ended.status_code == 202 and ended.json()["cancelled"] == 1
    finally:
        before = {json.dumps(i, sort_keys=True, default=str) for i in stack.raw_items()}
        stack.emulator.enterprise.deliveries.resume()
        ec.wait_for_callbacks(stack)
    delivered = stack.emulator.enterprise.deliveries.log
    assert delivered and delivered[-1]["status"] == 409
    after = {json.dumps(i, sort_keys=True, default=str) for i in stack.raw_items()}
    assert after == before  # nothing stored
    assert stack.browser("u_ana", ORG).get(stack.url("/v1/calendar/connection")).json()["state"] == "not_connected"
    assert _member_rows(stack, admin)["u_ana"]["status"] == "cancelled"


def test_replayed_member_callback_is_refused(stack, admin, crew):
    _authorized(stack, admin)
    ec.request_members(admin, stack.base_url, ORG, [("u_bo", f"bo@{DOMAIN}")])
    ec.settle(stack)
    note = stack.emulator.enterprise.deliveries.log[0]
    import requests

    again = requests.post(note["url"], data=note["body"], headers={"Content-Type": "application/json"}, timeout=10)
    assert again.status_code == 409 and again.json()["error"]["code"] == "state_used"


def test_ending_disconnects_only_admin_connected_members(stack, admin, crew, jane):
    jane_cal = connect(stack, jane["session"], "google", jane["work"], "Installs")
    push(stack, milestone("m1", 1, ["u_ana", "u_bo", "u_jane"]))
    _authorized(stack, admin)
    ec.request_members(admin, stack.base_url, ORG, [("u_ana", f"ana@{DOMAIN}"), ("u_bo", f"bo@{DOMAIN}")])
    ec.settle(stack)
    ana_cal = stack.browser("u_ana", ORG).get(stack.url("/v1/calendar/connection")).json()["calendar"]["id"]
    assert "sn-m1" in managed_events(stack, ana_cal)
    # Bo disconnects himself first: his events go as today
    bo = stack.browser("u_bo", ORG)
    assert bo.delete(stack.url("/v1/calendar/connection")).status_code == 202
    stack.drain()
    assert _member_rows(stack, admin)["u_bo"]["status"] == "disconnected"
    resp = admin.delete(stack.url(f"/v1/orgs/{ORG}/enterprise-connect"))
    assert resp.status_code == 202 and resp.json()["disconnecting"] == 1, resp.text
    stack.drain()
    assert managed_events(stack, ana_cal) == {}
    assert stack.browser("u_ana", ORG).get(stack.url("/v1/calendar/connection")).json()["state"] == "not_connected"
    # Jane, who connected herself, is untouched
    assert jane["session"].get(stack.url("/v1/calendar/connection")).json()["state"] == "connected"
    assert "sn-m1" in managed_events(stack, jane_cal)
    assert ec.status(admin, stack.base_url, ORG)["state"] == "ended"
    assert stack.emulator.enterprise_state()["service_accounts"][0]["revoked"] is True
    # asking for members again needs a new authorization
    again = ec.request_members(admin, stack.base_url, ORG, [("u_ana", f"ana@{DOMAIN}")])
    assert again.status_code == 409


def test_member_callback_refused_when_ended_even_if_members_were_not_cancelled(stack, admin, crew):
    """A crash between ending and cancelling the members leaves them `requested`: the claim itself checks
    the org, so the callback is still refused and stores nothing."""
    from calsync import wiring

    _authorized(stack, admin)
    stack.emulator.enterprise.deliveries.pause()
    try:
        ec.request_members(admin, stack.base_url, ORG, [("u_ana", f"ana@{DOMAIN}")])
        store = wiring.enterprise_connect().store
        pending = store.get_member(ORG, "u_ana")
        assert admin.delete(stack.url(f"/v1/orgs/{ORG}/enterprise-connect")).status_code == 202
        store.put_member(ORG, pending)  # as if the cancel had never happened
    finally:
        before = {json.dumps(i, sort_keys=True, default=str) for i in stack.raw_items()}
        stack.emulator.enterprise.deliveries.resume()
        ec.wait_for_callbacks(stack)
    delivered = stack.emulator.enterprise.deliveries.log
    assert delivered[-1]["status"] == 409
    assert json.loads(delivered[-1]["body"])["authorization"].get("code")
    assert {json.dumps(i, sort_keys=True, default=str) for i in stack.raw_items()} == before


def test_answers_match_the_openapi_document(stack, admin, crew):
    import requests

    from tests.integration.test_openapi_conformance import conforms

    base, api = stack.base_url, stack.url
    member = stack.browser("u_ana", ORG)
    assert conforms(admin.get(api(f"/v1/orgs/{ORG}/enterprise-connect"))).json()["state"] == "not_connected"
    assert conforms(member.post(api(f"/v1/orgs/{ORG}/enterprise-connect"), json={})).status_code == 403
    assert conforms(admin.post(api(f"/v1/orgs/{ORG}/enterprise-connect"), json={"return_to": "//x"})
                    ).status_code == 422
    assert conforms(admin.delete(api(f"/v1/orgs/{ORG}/enterprise-connect"))).status_code == 409
    assert conforms(requests.get(api(f"/v1/orgs/{ORG}/enterprise-connect"), timeout=10)).status_code == 401
    resp = ec.authorize(admin, base, ORG, DOMAIN)
    callback = next(r for r in resp.history if urlsplit(r.url).path == "/v1/enterprise-connect/oauth/callback")
    assert conforms(callback).status_code == 302
    members = [("u_ana", f"ana@{DOMAIN}"), ("u_cy", "cy@gmail.com")]
    assert conforms(ec.request_members(admin, base, ORG, members)).status_code == 202
    assert conforms(admin.post(api(f"/v1/orgs/{ORG}/enterprise-connect/members"), json={"members": []})
                    ).status_code == 422
    ec.settle(stack)
    assert conforms(admin.get(api(f"/v1/orgs/{ORG}/enterprise-connect"))).status_code == 200
    assert conforms(member.get(api("/v1/calendar/connection"))).json()["connected_by"] == "enterprise_connect"
    assert conforms(admin.get(api(f"/v1/orgs/{ORG}/calendar-connections"))).status_code == 200
    cb = api("/v1/enterprise-connect/members/callback")
    note = stack.emulator.enterprise.deliveries.log[0]
    assert conforms(requests.post(cb, data=note["body"], headers={"Content-Type": "application/json"},
                                  timeout=10)).status_code == 409
    assert conforms(requests.post(cb, json={"authorization": {"state": "a.b"}}, timeout=10)).status_code == 403
    assert conforms(requests.post(cb, json={"x": 1}, timeout=10)).status_code == 422
    assert conforms(admin.delete(api(f"/v1/orgs/{ORG}/enterprise-connect"))).status_code == 202


def test_a_member_whose_account_another_user_connected_keeps_it_working(stack, admin, crew):
    """Ana connected her account herself; the admin names it for another user id: refused as
    account_in_use, and her grant is not revoked (Cronofy revokes by account)."""
    ana = stack.browser("u_ana", ORG)
    connect(stack, ana, "google", crew["u_ana"], f"ana@{DOMAIN}")
    _authorized(stack, admin)
    stack.emulator.clear_request_log()
    resp = ec.request_members(admin, stack.base_url, ORG, [("u_ana2", f"ana@{DOMAIN}")])
    assert resp.status_code == 202, resp.text
    ec.settle(stack)
    rows = _member_rows(stack, admin)
    assert (rows["u_ana2"]["status"], rows["u_ana2"]["reason"]) == ("failed", "account_in_use")
    assert stack.emulator.count_requests(path_prefix="/oauth/token/revoke") == 0
    push(stack, milestone("m_ana", 1, ["u_ana"]))
    assert ana.get(stack.url("/v1/calendar/connection")).json()["state"] == "connected"


def test_members_connected_by_the_admin_have_their_time_zone(stack, admin, crew):
    stack.emulator.set_zoneinfo(crew["u_bo"]["profile_id"], "America/New_York")
    _authorized(stack, admin)
    assert ec.request_members(admin, stack.base_url, ORG, [("u_bo", f"bo@{DOMAIN}")]).status_code == 202
    ec.settle(stack)
    health = admin.get(stack.url(f"/v1/orgs/{ORG}/calendar-health")).json()
    assert next(m for m in health["members"] if m["user_id"] == "u_bo")["timezone"] == "America/New_York"


def test_a_refusal_of_the_members_request_fails_the_members_with_a_reason(stack, admin, crew):
    _authorized(stack, admin)
    stack.emulator.add_fault(path_prefix="/v1/service_account_authorizations", status=403, count=1)
    resp = ec.request_members(admin, stack.base_url, ORG, [("u_bo", f"bo@{DOMAIN}")])
    assert resp.status_code == 202, resp.text
    assert (resp.json()["members"][0]["status"], resp.json()["members"][0]["reason"]) == (
        "failed", "rejected_by_calendar_service")
    assert _member_rows(stack, admin)["u_bo"]["status"] == "failed"  # not left `requested`


def test_authorizing_again_revokes_the_service_account_it_replaces(stack, admin, crew):
    _authorized(stack, admin)
    _authorized(stack, admin)  # again, while active: a second service account
    accounts = stack.emulator.enterprise_state()["service_accounts"]
    assert len(accounts) == 2
    assert [a["revoked"] for a in accounts] == [True, False]  # the replaced one only
    resp = ec.request_members(admin, stack.base_url, ORG, [("u_bo", f"bo@{DOMAIN}")])  # the new one works
    assert resp.status_code == 202 and resp.json()["members"][0]["status"] == "requested"


def test_a_member_connected_in_another_org_is_refused_alone(stack, admin, crew):
    outsider = stack.emulator.add_calendar_account("google", "xo@elsewhere.example")
    connect(stack, stack.browser("u_xo", "org_other"), "google", outsider)
    _authorized(stack, admin)
    resp = ec.request_members(admin, stack.base_url, ORG, [("u_xo", f"xo@{DOMAIN}"), ("u_bo", f"bo@{DOMAIN}")])
    assert resp.status_code == 202, resp.text
    statuses = {m["user_id"]: (m["status"], m.get("reason")) for m in resp.json()["members"]}
    assert statuses == {"u_xo": ("refused", "not_in_org"), "u_bo": ("requested", None)}
    assert "org_other" not in resp.text
    ec.settle(stack)
    assert _member_rows(stack, admin)["u_bo"]["status"] == "connected"
