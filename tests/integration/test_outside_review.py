"""Issue 20, the outside review: findings 1, 2, 3, 6, 7, 8 and 10, each through the real handlers on the
local stack (moto + the Cronofy emulator)."""

from __future__ import annotations

import time

import pytest

from localdev import enterprise_flow as ec

ORG = "org_sunbright"
OTHER = "org_other"
DOMAIN = "sunbright.example"


@pytest.fixture
def admin(stack):
    stack.emulator.add_enterprise_domain("google", DOMAIN)
    return stack.browser("u_admin", ORG, roles=["admin"])


def _authorized(stack, admin) -> None:
    resp = ec.authorize(admin, stack.base_url, ORG, DOMAIN)
    assert ec.outcome(resp) == {"enterprise_connect": "connected"}, resp.url


# ---- 8. Enterprise Connect's admin routes run at the interactive priority ----------------------------


def test_8_admin_routes_do_not_draw_on_the_share_kept_for_queue_work(stack, admin):
    from calsync import wiring

    stack.emulator.add_calendar_account("google", f"bo@{DOMAIN}")
    _authorized(stack, admin)
    limiter = wiring.rate_limiter()
    # The bucket as a busy web app leaves it: the interactive share is spent, while queue work may still
    # take a request at once.
    spent_at = time.time()
    limiter._write_tat(limiter._read_tat(), spent_at + (limiter.burst - 1) / limiter.rate)
    assert limiter.acquire(1, "interactive") > 2.0
    share_back_at = spent_at + (limiter.burst - limiter.interactive_burst) / limiter.rate
    stack.emulator.clear_request_log()
    resp = ec.request_members(admin, stack.base_url, ORG, [("u_bo", f"bo@{DOMAIN}")])
    assert resp.status_code == 202, resp.text
    # The members request waited for the interactive share (the function's short wait for a person):
    # the queue's share was not used, although it was free all along.
    [sent] = [r for r in stack.emulator.request_log if r["path"] == "/v1/service_account_authorizations"]
    assert sent["at"] >= share_back_at - 0.2, (sent["at"] - spent_at, share_back_at - spent_at)
    assert resp.json()["members"][0]["status"] == "requested"


# ---- 10. a malformed service-account token answer ------------------------------------------------------


def _fragments(tokens: set[str], size: int = 8) -> set[str]:
    """Every `size`-character piece of every token: no part of one may be logged."""
    return {t[i:i + size] for t in tokens for i in range(0, len(t) - size + 1)}


def test_10_a_malformed_service_account_token_answer_is_revoked_and_never_logged(stack, admin, service_logs):
    stack.emulator.add_fault(path_prefix="/oauth/token", method="POST", mode="malformed", count=1)
    resp = ec.authorize(admin, stack.base_url, ORG, DOMAIN)
    assert ec.outcome(resp) == {"enterprise_connect": "error", "reason": "code_exchange_failed"}, resp.url
    # The grant Cronofy made (the code is spent) is revoked: nothing is left that nothing stored can revoke.
    [account] = stack.emulator.enterprise_state()["service_accounts"]
    assert account["revoked"] is True
    assert ec.status(admin, stack.base_url, ORG)["state"] == "not_connected"
    # No part of its tokens in any log line.
    enterprise = stack.emulator.enterprise
    tokens = set(enterprise.access) | set(enterprise.refresh)
    assert tokens
    logs = service_logs.getvalue()
    assert "the token response is not valid" in logs or "code exchange failed" in logs
    assert not [f for f in _fragments(tokens) if f in logs]


# ---- shared steps ---------------------------------------------------------------------------------------


def _conn(user_id: str):
    from calsync import wiring

    return wiring.store().get_connection(user_id)


def _sub_of(stack, account: dict) -> str:
    return next(a.sub for a in stack.emulator.state.accounts.values() if a.profile_id == account["profile_id"])


def _open_channels(stack, account: dict) -> set[str]:
    return {c["channel_id"] for c in stack.emulator.channels(_sub_of(stack, account))}


def _member_rows(stack, admin) -> dict[str, dict]:
    return {m["user_id"]: m for m in ec.status(admin, stack.base_url, ORG)["members"]}


# ---- 3. a refused connect completion leaves the live channel alone --------------------------------------


def test_3_a_second_consent_on_another_device_leaves_the_live_channel_open(stack, teammate):
    from localdev import browser

    session, account = teammate["session"], teammate["account"]
    phone = stack.browser("u_miguel", ORG)
    url = browser.start_connect(phone, stack.base_url, "microsoft")
    to_callback = browser.consent(phone, url, account["profile_id"], follow=False)
    assert browser.connect(session, stack.base_url, "microsoft", account["profile_id"])["calendar_sync"] == "connected"
    stack.drain()
    live = _conn("u_miguel").channel_id
    assert live in _open_channels(stack, account)
    landed = phone.get(to_callback.headers["Location"], timeout=20)  # the phone's consent completes late
    assert browser.outcome(landed) == {"calendar_sync": "error", "reason": "already_connected"}
    # Cronofy handed the refused attempt the same channel (same account, same callback URL): still open.
    assert live in _open_channels(stack, account)
    assert _conn("u_miguel").channel_id == live


def test_3_an_enterprise_callback_for_a_member_who_connected_the_mailbox_leaves_their_channel(stack, admin):
    mailbox = stack.emulator.add_calendar_account("google", f"ana@{DOMAIN}")
    _authorized(stack, admin)
    stack.emulator.enterprise.deliveries.pause()
    try:
        resp = ec.request_members(admin, stack.base_url, ORG, [("u_ana", f"ana@{DOMAIN}")])
        assert resp.json()["members"][0]["status"] == "requested"
        ana = stack.browser("u_ana", ORG)
        from tests.helpers import connect

        connect(stack, ana, "google", mailbox)  # she connects the same mailbox herself meanwhile
    finally:
        stack.emulator.enterprise.deliveries.resume()
        ec.settle(stack)
    assert (_member_rows(stack, admin)["u_ana"]["status"], _member_rows(stack, admin)["u_ana"]["reason"]) == (
        "failed", "already_connected")
    live = _conn("u_ana").channel_id
    assert live in _open_channels(stack, mailbox)
    assert stack.emulator.account_state(_sub_of(stack, mailbox))["tokens_valid"] is True


# ---- 2. a late member callback never replaces a user's own connection across orgs -----------------------


def test_2_a_late_member_callback_leaves_another_orgs_user_alone_and_revokes_its_grant(stack, admin):
    work = stack.emulator.add_calendar_account("google", f"xo@{DOMAIN}")
    own = stack.emulator.add_calendar_account("google", "xo@elsewhere.example", calendars=[
        {"name": "Work", "primary": True}, {"name": "Jobs", "primary": False}])
    _authorized(stack, admin)
    stack.emulator.enterprise.deliveries.pause()
    try:
        resp = ec.request_members(admin, stack.base_url, ORG, [("u_xo", f"xo@{DOMAIN}")])
        assert resp.json()["members"][0]["status"] == "requested"  # known nowhere yet
        xo = stack.browser("u_xo", OTHER)
        from localdev import browser

        outcome = browser.connect(xo, stack.base_url, "google", own["profile_id"])
        assert outcome["calendar_sync"] == "choose_calendar"  # pending_calendar: a replaceable state
    finally:
        stack.emulator.enterprise.deliveries.resume()
        ec.settle(stack)
    row = _member_rows(stack, admin)["u_xo"]
    assert (row["status"], row["reason"]) == ("failed", "not_in_org")
    mine = xo.get(stack.url("/v1/calendar/connection"))
    assert mine.status_code == 200 and mine.json()["state"] == "pending_calendar", mine.text
    assert _conn("u_xo").org_id == OTHER and _conn("u_xo").cronofy_sub == _sub_of(stack, own)
    # the grant the callback brought (org A's mailbox) is revoked; theirs stays
    assert stack.emulator.account_state(_sub_of(stack, work))["tokens_valid"] is False
    assert stack.emulator.account_state(_sub_of(stack, own))["tokens_valid"] is True


# ---- 7. an admin's member callback never replaces a member's own pending connection ----------------------


def test_7_a_member_callback_does_not_replace_the_members_own_pending_connection(stack, admin):
    work = stack.emulator.add_calendar_account("google", f"mo@{DOMAIN}")
    personal = stack.emulator.add_calendar_account("google", "mo@gmail.example", calendars=[
        {"name": "Mine", "primary": True}, {"name": "Side", "primary": False}])
    _authorized(stack, admin)
    stack.emulator.enterprise.deliveries.pause()
    try:
        assert ec.request_members(admin, stack.base_url, ORG, [("u_mo", f"mo@{DOMAIN}")]).status_code == 202
        mo = stack.browser("u_mo", ORG)
        from localdev import browser

        assert browser.connect(mo, stack.base_url, "google", personal["profile_id"])["calendar_sync"] == \
            "choose_calendar"
    finally:
        stack.emulator.enterprise.deliveries.resume()
        ec.settle(stack)
    row = _member_rows(stack, admin)["u_mo"]
    assert (row["status"], row["reason"]) == ("failed", "already_connected")
    assert _conn("u_mo").cronofy_sub == _sub_of(stack, personal)  # hers, still pending her choice
    assert mo.get(stack.url("/v1/calendar/connection")).json()["state"] == "pending_calendar"
    # every grant is one something stored can revoke: hers is stored, the admin's attempt is revoked
    assert stack.emulator.account_state(_sub_of(stack, personal))["tokens_valid"] is True
    assert stack.emulator.account_state(_sub_of(stack, work))["tokens_valid"] is False


# ---- 1. Enterprise Connect never takes another org's user id -------------------------------------------


def test_1_a_member_id_known_in_another_org_is_refused_alone_with_a_403(stack, admin):
    from tests.helpers import connect, milestone, push

    stack.emulator.add_calendar_account("google", f"bo@{DOMAIN}")
    outsider = stack.emulator.add_calendar_account("google", "xo@elsewhere.example")
    connect(stack, stack.browser("u_xo", OTHER), "google", outsider)  # connected in org_other
    assert push(stack, milestone("m_other", 1, ["u_yu"], org_id=OTHER)) == set()  # the core: u_yu is in org_other
    _authorized(stack, admin)
    before = {m["user_id"] for m in ec.status(admin, stack.base_url, ORG)["members"]}
    resp = ec.request_members(admin, stack.base_url, ORG, [
        ("u_xo", f"xo@{DOMAIN}"), ("u_yu", f"yu@{DOMAIN}"), ("u_bo", f"bo@{DOMAIN}")])
    assert resp.status_code == 202, resp.text
    members = {m["user_id"]: m for m in resp.json()["members"]}
    for refused in ("u_xo", "u_yu"):
        assert (members[refused]["status"], members[refused]["reason"]) == ("refused", "not_in_org")
        assert members[refused]["error"]["status"] == 403 and members[refused]["error"]["code"] == "not_in_org"
    assert members["u_bo"]["status"] == "requested" and resp.json()["requested"] == 1
    assert OTHER not in resp.text
    ec.settle(stack)
    rows = _member_rows(stack, admin)
    assert set(rows) - before == {"u_bo"}  # nothing stored for the refused ones
    assert _conn("u_yu") is None and _conn("u_xo").org_id == OTHER


def test_1_the_users_own_session_wins_over_an_admin_who_named_them(stack, admin):
    """An id known nowhere cannot be checked when it is named: the org-B user's own session (the core
    platform's word on their org) then undoes what org A's admin made under their id, and nothing of
    theirs is hidden: status, connect, disconnect and B's health work for them."""
    from tests.helpers import connect, managed_events, milestone, push

    work = stack.emulator.add_calendar_account("google", f"zed@{DOMAIN}")
    own = stack.emulator.add_calendar_account("google", "zed@elsewhere.example")
    _authorized(stack, admin)
    assert ec.request_members(admin, stack.base_url, ORG, [("u_zed", f"zed@{DOMAIN}")]).status_code == 202
    ec.settle(stack)
    push(stack, milestone("m_a", 1, ["u_zed"]))
    taken = _conn("u_zed")
    assert taken.org_id == ORG and taken.connected_by == "enterprise_connect"
    assert "sn-m_a" in managed_events(stack, taken.calendar_id)
    zed = stack.browser("u_zed", OTHER)
    status = zed.get(stack.url("/v1/calendar/connection"))
    assert status.status_code == 200 and status.json() == {"state": "not_connected"}, status.text
    stack.drain()  # the usual cleanup in org A: its events removed, its channel closed, its grant revoked
    assert _conn("u_zed") is None
    assert managed_events(stack, taken.calendar_id) == {}
    assert stack.emulator.account_state(_sub_of(stack, work))["tokens_valid"] is False
    assert _member_rows(stack, admin)["u_zed"]["status"] == "disconnected"
    connect(stack, zed, "google", own)  # their own calendar, in their own org
    assert zed.get(stack.url("/v1/calendar/connection")).json()["state"] == "connected"
    b_admin = stack.browser("u_b_admin", OTHER, roles=["admin"])
    health = b_admin.get(stack.url(f"/v1/orgs/{OTHER}/calendar-health"))
    assert "u_zed" in {m["user_id"] for m in health.json()["members"]}
    assert zed.delete(stack.url("/v1/calendar/connection")).status_code == 202


# ---- 6. a replayed signed profile_disconnected push ---------------------------------------------------


def test_6_a_replayed_profile_disconnected_push_leaves_a_relinked_connection_working(stack, teammate, miguel_cal,
                                                                                       monkeypatch):
    from functions.webhook_intake import app as intake
    from tests.helpers import managed_events, milestone, push
    from tests.integration.test_webhook_intake import post

    profile = teammate["account"]["profile_id"]
    stack.emulator.clear_notifications()
    stack.emulator.disconnect_profile(profile)
    assert stack.emulator.wait_for_notifications(timeout=5)
    [captured] = [n for n in stack.emulator.notifications if n["type"] == "profile_disconnected"]
    stack.drain()
    status = teammate["session"].get(stack.url("/v1/calendar/connection")).json()
    assert (status["state"], status["last_error"]) == ("needs_reauth", "profile_disconnected")  # the genuine one
    stack.emulator.reconnect_profile(profile)  # the user relinks and connects again
    from tests.helpers import connect

    assert connect(stack, teammate["session"], "microsoft", teammate["account"]) == miguel_cal
    # 11 minutes later the captured push, signature and all, is replayed at the same channel URL
    monkeypatch.setattr(intake, "_clock", lambda: time.time() + 11 * 60)
    resp = post(captured["url"], captured["body"].encode(), captured["signature"])
    assert resp.status_code == 202 and resp.json()["status"] == "queued", resp.text
    assert stack.drain() == 1
    status = teammate["session"].get(stack.url("/v1/calendar/connection")).json()
    assert status["state"] == "connected", status
    assert push(stack, milestone("m_after", 1, ["u_miguel"])) == set()
    assert "sn-m_after" in managed_events(stack, miguel_cal)


# ---- 3. a push channel that is gone is noticed and mended within a day, and shown until then -------------


def test_3_a_gone_channel_shows_in_health_and_the_next_daily_visit_makes_it_again(stack, teammate, miguel_cal):
    from datetime import timedelta

    from calsync import wiring
    from calsync.models import utcnow
    from tests.helpers import in_days, iso

    store = wiring.store()
    conn = store.get_connection("u_miguel")
    stack.emulator.close_channel(conn.channel_id)  # gone at Cronofy: nothing tells us
    now = utcnow()
    store.update_connection("u_miguel", lambda c: c.model_copy(update={
        "channel_seen_at": now - timedelta(hours=27), "last_checked_at": now - timedelta(hours=24)}))
    admin = stack.browser("u_admin", ORG, roles=["admin"])

    def health() -> dict:
        resp = admin.get(stack.url(f"/v1/orgs/{ORG}/calendar-health"))
        assert resp.status_code == 200, resp.text
        return next(m for m in resp.json()["members"] if m["user_id"] == "u_miguel")

    shown = health()
    assert shown["stale"] is True and shown["last_error"]["reason"] == "push_channel_unconfirmed"
    stack.emulator.clear_request_log()
    report = stack.invoke("ReconcilerFunction", {})  # the scheduled run: Miguel is due (checked 24 h ago)
    assert report["users"] == 1 and report["channels"] == 1
    # the read, the listing, the new channel: counted like every Cronofy request of the run
    assert report["cronofy_requests"] == 3 == len(stack.emulator.request_log)
    mended = store.get_connection("u_miguel").channel_id
    assert mended != conn.channel_id
    assert mended in {c["channel_id"] for c in stack.emulator.channels(conn.cronofy_sub)}
    shown = health()
    assert shown["stale"] is False and shown["last_error"] is None
    # a calendar change sends a notification again, and it is read
    stack.emulator.clear_notifications()
    stack.emulator.add_external_event(miguel_cal, "Dentist", iso(in_days(2, 9)), iso(in_days(2, 10)))
    assert stack.emulator.wait_for_notifications(timeout=5)
    assert [n["status"] for n in stack.emulator.notifications if n["type"] == "change"] == [202]
    assert stack.drain() >= 1
