"""The admin's side of Enterprise Connect, scripted like a browser (the demo, the tests, the benchmark):
SolarNexus -> POST /v1/orgs/{org}/enterprise-connect -> Cronofy's Enterprise Connect page -> Allow ->
our callback -> the web app; then members asked for and Cronofy's callbacks awaited."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

from localdev.browser import _FormParser


def authorize(session: requests.Session, api_base: str, org_id: str, domain: str | None,
              allow: bool = True, follow: bool = True) -> requests.Response:
    resp = session.post(f"{api_base}/v1/orgs/{org_id}/enterprise-connect", json={}, timeout=10)
    resp.raise_for_status()
    page = session.get(resp.json()["authorization_url"], timeout=10)
    page.raise_for_status()
    form = _FormParser()
    form.feed(page.text)
    data = dict(form.hidden) | {"decision": "allow" if allow else "deny"}
    if domain:
        data["domain"] = domain
    return session.post(urljoin(page.url, form.action or ""), data=data, allow_redirects=follow, timeout=20)


def outcome(response: requests.Response) -> dict[str, str]:
    url = response.headers.get("Location") if response.is_redirect else response.url
    return {k: v[0] for k, v in parse_qs(urlsplit(url or "").query).items()}


def request_members(session: requests.Session, api_base: str, org_id: str,
                    members: list[tuple[str, str]]) -> requests.Response:
    body = {"members": [{"user_id": user_id, "email": email} for user_id, email in members]}
    return session.post(f"{api_base}/v1/orgs/{org_id}/enterprise-connect/members", json=body, timeout=120)


def wait_for_callbacks(stack, timeout: float = 300) -> None:
    """Until the emulator has delivered every queued callback (each one runs our handler)."""
    if not stack.emulator.enterprise.deliveries.wait_idle(timeout) or not stack.emulator.notifier.wait_idle(timeout):
        raise TimeoutError("Cronofy's member callbacks are still being delivered")


def status(session: requests.Session, api_base: str, org_id: str) -> dict:
    resp = session.get(f"{api_base}/v1/orgs/{org_id}/enterprise-connect", timeout=10)
    resp.raise_for_status()
    return resp.json()


def settle(stack, timeout: float = 300) -> None:
    """Callbacks delivered, backfills finished, queues drained."""
    deadline = time.monotonic() + timeout
    wait_for_callbacks(stack, timeout)
    stack.wait_for_executions(max(1.0, deadline - time.monotonic()))
    stack.drain()
