"""The data model of the emulated Cronofy tenant: profiles, calendars, events, accounts, OAuth codes and
tokens, channels, the clock, and the constants that describe them (scopes, providers).

Plain data with no rules beyond their own shape; ``state.py`` holds them and the modules beside it
(``oauth.py``, ``actions.py``, ``api.py``) act on them.
"""

from __future__ import annotations

import secrets
import string
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import EmulatorError
from .timefmt import fmt_time, whole_seconds

CODE_TTL = timedelta(minutes=10)
MAX_CHANNELS_PER_ACCOUNT = 128
DEFAULT_SCOPE = "read_account list_calendars read_events create_event delete_event"

KNOWN_SCOPES = frozenset(
    {
        "read_account",
        "list_calendars",
        "read_events",
        "create_event",
        "delete_event",
        "read_free_busy",
        "create_calendar",
        "change_participation_status",
        "read_write",
        "write_only",
        "free_busy_write",
    }
)

# What each granted scope allows, beyond its own name.
_SCOPE_IMPLIES: dict[str, set[str]] = {
    "read_write": set(KNOWN_SCOPES),
    "write_only": {"create_event", "delete_event", "list_calendars", "read_account"},
    "free_busy_write": {"read_free_busy", "list_calendars", "create_event", "delete_event"},
    "read_events": {"read_free_busy"},
}

# Seeding: provider -> (provider_name, provider_service or None = decide from e-mail domain).
PROVIDERS: dict[str, tuple[str, str | None]] = {
    "google": ("google", None),
    "gsuite": ("google", "gsuite"),
    "microsoft": ("exchange", "office365"),
    "office365": ("exchange", "office365"),
    "exchange": ("exchange", "exchange"),
    "outlook": ("live_connect", "outlook_com"),
    "outlook_com": ("live_connect", "outlook_com"),
    "live_connect": ("live_connect", "outlook_com"),
    "apple": ("apple", "icloud"),
    "icloud": ("apple", "icloud"),
}

# /oauth/authorize provider_name -> the seeded provider_names it offers.
AUTHORIZE_PROVIDERS: dict[str, set[str]] = {
    "google": {"google"},
    "office365": {"exchange", "live_connect"},
    "exchange": {"exchange", "live_connect"},
    "live_connect": {"exchange", "live_connect"},
    "apple": {"apple"},
}

_ALNUM = string.ascii_letters + string.digits


def random_id(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def random_hex(n: int) -> str:
    return secrets.token_hex(n // 2 + 1)[:n]


def scope_allows(scope: str, needed: str) -> bool:
    granted: set[str] = set()
    for item in scope.split():
        granted.add(item)
        granted |= _SCOPE_IMPLIES.get(item, set())
    return needed in granted


# ------------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------------


@dataclass
class Profile:
    profile_id: str
    provider_name: str
    provider_service: str
    email: str
    name: str
    zoneinfo: str
    calendar_ids: list[str] = field(default_factory=list)
    connected: bool = True
    relink_url: str | None = None
    initial_sync_due: datetime | None = None  # first sync running until then
    initial_sync_done: bool = False


@dataclass
class Calendar:
    calendar_id: str
    profile_id: str
    name: str
    readonly: bool = False
    primary: bool = False
    deleted: bool = False
    events: dict[str, Event] = field(default_factory=dict)  # event_uid -> Event
    managed_index: dict[str, str] = field(default_factory=dict)  # event_id -> event_uid


@dataclass
class Event:
    calendar_id: str
    event_uid: str
    event_id: str | None
    summary: str
    start: str
    end: str
    all_day: bool
    start_tzid: str | None
    end_tzid: str | None
    created: datetime
    updated: datetime
    description: str = ""
    location: dict[str, Any] | None = None
    url: str | None = None
    transparency: str = "opaque"
    status: str = "confirmed"
    deleted: bool = False
    deleted_by: str | None = None
    reminders: list[dict[str, Any]] = field(default_factory=list)
    event_private: bool = False
    color: str | None = None
    attendees: list[dict[str, Any]] = field(default_factory=list)
    organizer: dict[str, Any] | None = None
    participation_status: str = "accepted"
    recurring: bool = False
    series_identifier: str | None = None
    categories: list[str] = field(default_factory=list)
    spans: list[tuple[str, str]] = field(default_factory=list)  # every (start, end) it has had
    external_updated: datetime | None = None  # last change made outside the application

    @property
    def managed(self) -> bool:
        return self.event_id is not None

    def snapshot(self) -> dict[str, Any]:
        return {
            "calendar_id": self.calendar_id,
            "event_uid": self.event_uid,
            "event_id": self.event_id,
            "managed": self.managed,
            "summary": self.summary,
            "description": self.description,
            "start": self.start,
            "end": self.end,
            "all_day": self.all_day,
            "tzid": self.start_tzid,
            "start_tzid": self.start_tzid,
            "end_tzid": self.end_tzid,
            "location": dict(self.location) if self.location else None,
            "url": self.url,
            "transparency": self.transparency,
            "status": self.status,
            "deleted": self.deleted,
            "deleted_by": self.deleted_by,
            "reminders": [dict(r) for r in self.reminders],
            "event_private": self.event_private,
            "color": self.color,
            "attendees": [dict(a) for a in self.attendees],
            "recurring": self.recurring,
            "created": fmt_time(self.created),
            "updated": fmt_time(self.updated),
            "spans": list(self.spans),
        }


@dataclass
class Account:
    sub: str
    profile_id: str
    created: datetime
    scope: str = DEFAULT_SCOPE
    revoked: bool = False
    profile_attached: bool = True


@dataclass
class AccessToken:
    token: str
    sub: str
    scope: str
    expires_at: datetime
    revoked: bool = False


@dataclass
class RefreshToken:
    token: str
    sub: str
    scope: str
    revoked: bool = False


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    profile_id: str
    scope: str
    expires_at: datetime


@dataclass
class Channel:
    channel_id: str
    sub: str
    callback_url: str
    filters: dict[str, Any]
    created: datetime
    open: bool = True
    closed_reason: str | None = None

    def body(self) -> dict[str, Any]:
        return {"channel_id": self.channel_id, "callback_url": self.callback_url, "filters": self.filters}


class Clock:
    """Real UTC time plus an adjustable offset, truncated to whole seconds."""

    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            offset = self._offset
        return whole_seconds(datetime.now(UTC) + offset)

    def precise(self) -> datetime:
        """The same clock without truncation (write visibility, push timing)."""
        with self._lock:
            offset = self._offset
        return datetime.now(UTC) + offset

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise EmulatorError("the emulator clock only moves forward")
        with self._lock:
            self._offset += timedelta(seconds=seconds)
        return self.now()


NotifySink = Callable[[str, bytes, dict[str, Any]], None]


@dataclass
class PendingWrite:
    due: datetime
    seq: int
    apply: Callable[[datetime], None]

