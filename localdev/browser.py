"""A scripted browser for the OAuth flow: follows redirects, submits the consent page's form.

Used by the demo and the tests so both take the path a person's browser takes:
web app -> POST /v1/calendar/connect -> Cronofy consent page -> Allow/Deny -> our callback -> web app.
"""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import requests


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.method = "get"
        self.hidden: dict[str, str] = {}
        self.accounts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = values.get("action", "")
            self.method = values.get("method", "get").lower()
        elif tag == "input" and values.get("type") == "hidden":
            self.hidden[values.get("name", "")] = values.get("value", "")
        elif tag == "input" and values.get("type") == "radio" and values.get("name") == "profile_id":
            self.accounts.append(values.get("value", ""))


def outcome(response: requests.Response) -> dict[str, str]:
    """The calendar_sync outcome in the web-app URL the flow ended on."""
    query = parse_qs(urlsplit(response.url).query)
    return {k: v[0] for k, v in query.items()}


def start_connect(session: requests.Session, api_base: str, provider: str, return_to: str | None = None) -> str:
    body = {"provider": provider} | ({"return_to": return_to} if return_to else {})
    resp = session.post(f"{api_base}/v1/calendar/connect", json=body, timeout=10)
    resp.raise_for_status()
    return resp.json()["authorization_url"]


def consent(session: requests.Session, authorization_url: str, profile_id: str | None, allow: bool = True,
            follow: bool = True) -> requests.Response:
    """Open the consent page, pick the account, click Allow or Deny, follow the redirects."""
    page = session.get(authorization_url, timeout=10)
    page.raise_for_status()
    form = _FormParser()
    form.feed(page.text)
    if profile_id is not None and profile_id not in form.accounts:
        raise AssertionError(f"account {profile_id} is not offered on the consent page: {form.accounts}")
    data = dict(form.hidden)
    if profile_id is not None:
        data["profile_id"] = profile_id
    data["decision"] = "allow" if allow else "deny"
    action = urljoin(page.url, form.action or "")
    return session.post(action, data=data, allow_redirects=follow, timeout=20)


def connect(session: requests.Session, api_base: str, provider: str, profile_id: str | None,
            allow: bool = True) -> dict[str, str]:
    """The whole flow; returns the outcome the web app receives."""
    url = start_connect(session, api_base, provider)
    return outcome(consent(session, url, profile_id, allow))
