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
