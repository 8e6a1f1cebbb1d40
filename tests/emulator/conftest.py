"""Shared fixtures for the emulator tests: a started emulator, connected users, a webhook receiver."""

from __future__ import annotations

import itertools
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from localdev.emulator import DEFAULT_SCOPE, CronofyEmulator

CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret-abc123"
REDIRECT_URI = "http://app.test/v1/calendar/oauth/callback"
# The offline Cronofy reference's sample payloads, beside the repository (../shared).
CRONOFY_FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "cronofy-fixtures"
_counter = itertools.count(1)


def unique_email(prefix: str = "tech") -> str:
    return f"{prefix}{next(_counter)}@sunbright-solar.example"


def landed(emu: CronofyEmulator, calendar_id: str, include_deleted: bool = False) -> list[dict[str, Any]]:
    """The calendar once Cronofy has applied every accepted write (writes land after a delay)."""
    emu.settle()
    return emu.events(calendar_id, include_deleted=include_deleted)


def make_emulator(**kwargs: Any) -> CronofyEmulator:
    options: dict[str, Any] = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "page_size": 5}
    options.update(kwargs)
    return CronofyEmulator(**options).start()


@pytest.fixture(scope="module")
def emu():
    emulator = make_emulator()
    yield emulator
    emulator.stop()


@dataclass
class Conn:
    """A user who went through the consent page and the token exchange."""

    emu: CronofyEmulator
    tokens: dict[str, Any]
    account: dict[str, Any]
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def sub(self) -> str:
        return self.tokens["sub"]

    @property
    def calendar_id(self) -> str:
        return self.account["calendars"][0]["calendar_id"]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}

    def url(self, path: str) -> str:
        return self.emu.base_url + path

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        settle: bool = True,
        **kwargs: Any,
    ) -> requests.Response:
        merged = {**self.headers, **(headers or {})}
        if method == "GET" and settle:
            # Cronofy applies writes asynchronously (realism.write_delay): these strictness tests
            # read once Cronofy has caught up. Tests of the delay itself pass settle=False.
            self.emu.settle()
        return self.session.request(method, self.url(path), headers=merged, timeout=10, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def upsert(self, event: dict[str, Any], calendar_id: str | None = None) -> requests.Response:
        return self.post(f"/v1/calendars/{calendar_id or self.calendar_id}/events", json=event)

    def refresh(self) -> requests.Response:
        resp = requests.post(
            self.url("/oauth/token"),
            timeout=10,
            json={
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "grant_type": "refresh_token",
                "refresh_token": self.tokens["refresh_token"],
            },
        )
        if resp.status_code == 200:
            self.tokens.update(resp.json())
        return resp


def authorize_params(**overrides: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": DEFAULT_SCOPE,
        "state": "st-123",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def consent(
    emu: CronofyEmulator, profile_id: str | None, decision: str = "allow", **overrides: str
) -> requests.Response:
    form = authorize_params(**overrides)
    form["decision"] = decision
    if profile_id:
        form["profile_id"] = profile_id
    return requests.post(emu.base_url + "/oauth/authorize", data=form, allow_redirects=False, timeout=10)


def code_from(location: str) -> str:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
    return query["code"][0]


def exchange(
    emu: CronofyEmulator, code: str, redirect_uri: str = REDIRECT_URI, **overrides: str
) -> requests.Response:
    body = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
    }
    body.update(overrides)
    return requests.post(emu.base_url + "/oauth/token", json=body, timeout=10)


def connect(
    emu: CronofyEmulator,
    provider: str = "google",
    calendars: list[dict[str, Any]] | None = None,
    scope: str = DEFAULT_SCOPE,
    email: str | None = None,
) -> Conn:
    account = emu.add_calendar_account(provider, email or unique_email(), calendars=calendars)
    resp = consent(emu, account["profile_id"], scope=scope)
    assert resp.status_code == 302, resp.text
    tokens = exchange(emu, code_from(resp.headers["Location"]))
    assert tokens.status_code == 200, tokens.text
    return Conn(emu, tokens.json(), account)


def timed_event(
    event_id: str, start: str = "2030-03-05T15:30:00Z", end: str = "2030-03-05T17:00:00Z", **extra: Any
) -> dict[str, Any]:
    event = {
        "event_id": event_id,
        "summary": f"Site survey {event_id}",
        "start": start,
        "end": end,
        "tzid": "America/Denver",
    }
    event.update(extra)
    return event


@pytest.fixture
def conn(emu: CronofyEmulator) -> Conn:
    return connect(emu)


# ------------------------------------------------------------------------------------------------
# A tiny webhook receiver
# ------------------------------------------------------------------------------------------------


class Receiver:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._cond:
                    receiver.received.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers),
                            "raw": raw,
                            "json": json.loads(raw),
                        }
                    )
                    receiver._cond.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def of_type(self, kind: str, path: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            return [
                r
                for r in self.received
                if r["json"]["notification"]["type"] == kind and (path is None or r["path"] == path)
            ]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def receiver():
    rec = Receiver()
    yield rec
    rec.close()
