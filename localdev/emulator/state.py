"""In-memory data model of the emulated Cronofy tenant and the rules that act on it.

Everything here runs under ``EmulatorState.lock``. HTTP concerns live in ``server.py`` and the
``/v1`` endpoint logic in ``api.py``; this module owns identities (profiles, calendars,
accounts, tokens, codes), events, channels, the clock and notification emission.
"""

from __future__ import annotations

import secrets
import string
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import ApiError, EmulatorError
from .notify import encode_notification
from .realism import Realism
from .timefmt import (
    ONE_SECOND,
    coerce_time_or_date,
    fmt_time,
    get_zone,
    is_time_string,
    parse_date,
    parse_time,
    whole_seconds,
)

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
_PROVIDERS: dict[str, tuple[str, str | None]] = {
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


def _rand(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _hex(n: int) -> str:
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


# ------------------------------------------------------------------------------------------------
# State
# ------------------------------------------------------------------------------------------------


class EmulatorState:
    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        access_token_ttl: int,
        page_size: int,
        rotate_refresh_tokens: bool,
        notify: NotifySink,
        base_url: Callable[[], str],
        realism: Realism | None = None,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.client_id = client_id
        self.client_secret = client_secret
        self.client_secrets: list[str] = [client_secret]  # active secrets (two during a rotation)
        self.realism = realism or Realism.off()
        self.access_token_ttl = access_token_ttl
        self.page_size = page_size
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.clock = Clock()
        self.lock = threading.RLock()
        self._notify = notify
        self._base_url = base_url
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.profiles: dict[str, Profile] = {}
            self.calendars: dict[str, Calendar] = {}
            self.accounts: dict[str, Account] = {}
            self.account_by_profile: dict[str, str] = {}
            self.access_tokens: dict[str, AccessToken] = {}
            self.refresh_tokens: dict[str, RefreshToken] = {}
            self.codes: dict[str, AuthCode] = {}
            self.channels: dict[str, Channel] = {}
            self.page_cursors: dict[str, dict[str, Any]] = {}
            self.pending_writes: list[PendingWrite] = []
            self._write_seq = 0

    # --------------------------------------------------------------------------------------
    # Asynchronous writes, initial syncs (issue 12)
    # --------------------------------------------------------------------------------------
    def defer(self, apply: Callable[[datetime], None]) -> None:
        """Apply a write ``realism.write_delay`` seconds from now (at once when the delay is 0).
        ``apply(when)`` gets the time the write lands."""
        with self.lock:
            self.tick()
            delay = self.realism.write_delay
            if delay <= 0 and not self.pending_writes:
                apply(self.now())
                return
            self._write_seq += 1
            due = self.clock.precise() + timedelta(seconds=delay)
            self.pending_writes.append(PendingWrite(due, self._write_seq, apply))

    def tick(self, *, flush: bool = False) -> None:
        """Land the writes whose time has come (all of them with ``flush``) and finish due initial
        syncs. Called before every read, inspection and write, and by the notifier's clock."""
        with self.lock:
            now = self.clock.precise()
            while self.pending_writes and (flush or self.pending_writes[0].due <= now):
                write = self.pending_writes.pop(0)
                write.apply(whole_seconds(min(write.due, now)))
            for profile in self.profiles.values():
                if profile.initial_sync_due is not None and (flush or profile.initial_sync_due <= now):
                    self._complete_initial_sync(profile)

    def _complete_initial_sync(self, profile: Profile) -> None:
        profile.initial_sync_due = None
        profile.initial_sync_done = True
        sub = self.account_by_profile.get(profile.profile_id)
        account = self.accounts.get(sub) if sub else None
        if account is None or account.revoked or not account.profile_attached:
            return
        # Channels created after this moment never hear of it (Cronofy skips it for them).
        for chan in self.channels.values():
            if chan.open and chan.sub == account.sub:
                self.emit(chan, {"type": "profile_initial_sync_completed"})

    # --------------------------------------------------------------------------------------
    # Client secret rotation (issue 12)
    # --------------------------------------------------------------------------------------
    def begin_secret_rotation(self, new_secret: str) -> list[str]:
        if not isinstance(new_secret, str) or not new_secret:
            raise EmulatorError("new_secret must be a non-empty string")
        with self.lock:
            self.client_secrets = [self.client_secrets[0], new_secret]
            return list(self.client_secrets)

    def complete_secret_rotation(self) -> list[str]:
        with self.lock:
            if len(self.client_secrets) < 2:
                raise EmulatorError("no client secret rotation is in progress", status=409)
            self.client_secrets = [self.client_secrets[-1]]
            self.client_secret = self.client_secrets[0]
            return list(self.client_secrets)

    def give_up_channel(self, meta: dict[str, Any]) -> None:
        """Persistent delivery failure: Cronofy closes the channel."""
        with self.lock:
            chan = self.channels.get(meta.get("channel_id", ""))
            if chan is not None and chan.open:
                chan.open = False
                chan.closed_reason = "delivery_failed"

    def now(self) -> datetime:
        return self.clock.now()

    @property
    def base_url(self) -> str:
        return self._base_url()

    # --------------------------------------------------------------------------------------
    # Seeding
    # --------------------------------------------------------------------------------------
    def add_calendar_account(
        self,
        provider: str,
        email: str,
        calendars: list[dict[str, Any]] | None = None,
        name: str | None = None,
        zoneinfo: str = "Etc/UTC",
    ) -> dict[str, Any]:
        key = (provider or "").strip().lower()
        if key not in _PROVIDERS:
            raise EmulatorError(f"unknown provider {provider!r}; use google, microsoft or apple")
        if not isinstance(email, str) or "@" not in email:
            raise EmulatorError("email must be an e-mail address")
        provider_name, service = _PROVIDERS[key]
        if service is None:
            service = "google" if email.lower().endswith(("@gmail.com", "@googlemail.com")) else "gsuite"
        calendars = calendars if calendars is not None else [{"name": email, "primary": True}]
        if not isinstance(calendars, list) or not calendars:
            raise EmulatorError("calendars must be a non-empty list")
        with self.lock:
            for other in self.profiles.values():
                if other.provider_name == provider_name and other.email.lower() == email.lower():
                    raise EmulatorError(f"{email} already has a {provider_name} account", status=409)
            suffix = _rand(16)
            profile = Profile(
                profile_id=f"pro_{suffix}",
                provider_name=provider_name,
                provider_service=service,
                email=email,
                name=name or email.split("@")[0].replace(".", " ").title(),
                zoneinfo=zoneinfo,
            )
            for spec in calendars:
                if not isinstance(spec, dict) or not isinstance(spec.get("name", email), str):
                    raise EmulatorError("each calendar must be an object with a name")
                cal = Calendar(
                    calendar_id=f"cal_{suffix}_{_rand(10, string.ascii_lowercase + string.digits)}",
                    profile_id=profile.profile_id,
                    name=spec.get("name") or email,
                    readonly=bool(spec.get("readonly", False)),
                    primary=bool(spec.get("primary", False)),
                    deleted=bool(spec.get("deleted", False)),
                )
                self.calendars[cal.calendar_id] = cal
                profile.calendar_ids.append(cal.calendar_id)
            self.profiles[profile.profile_id] = profile
            return {
                "profile_id": profile.profile_id,
                "profile_name": profile.email,
                "provider_name": profile.provider_name,
                "provider_service": profile.provider_service,
                "email": profile.email,
                "name": profile.name,
                "calendars": [self.calendar_json(self.calendars[c]) for c in profile.calendar_ids],
            }

    def update_calendar(
        self,
        calendar_id: str,
        *,
        readonly: bool | None = None,
        deleted: bool | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            cal = self._calendar(calendar_id)
            if readonly is not None:
                cal.readonly = bool(readonly)
            if deleted is not None:
                cal.deleted = bool(deleted)
            if name is not None:
                cal.name = name
            return self.calendar_json(cal)

    def list_profiles(self) -> list[dict[str, Any]]:
        with self.lock:
            out = []
            for p in self.profiles.values():
                item = self.profile_json(p)
                item["email"] = p.email
                item["account_sub"] = self.account_by_profile.get(p.profile_id)
                item["calendars"] = [self.calendar_json(self.calendars[c]) for c in p.calendar_ids]
                out.append(item)
            return out

    def profiles_for_provider(self, provider_name: str | None) -> list[Profile]:
        with self.lock:
            wanted = AUTHORIZE_PROVIDERS.get(provider_name) if provider_name else None
            return [p for p in self.profiles.values() if wanted is None or p.provider_name in wanted]

    # --------------------------------------------------------------------------------------
    # JSON shapes
    # --------------------------------------------------------------------------------------
    def calendar_json(self, cal: Calendar, with_profile: bool = True) -> dict[str, Any]:
        profile = self.profiles.get(cal.profile_id)
        out: dict[str, Any] = {}
        if with_profile and profile is not None:
            out.update(
                provider_name=profile.provider_name,
                profile_id=profile.profile_id,
                profile_name=profile.email,
            )
        provider = profile.provider_name if profile else ""
        out.update(
            calendar_id=cal.calendar_id,
            calendar_name=cal.name,
            calendar_readonly=cal.readonly,
            calendar_deleted=cal.deleted,
            calendar_primary=cal.primary,
            calendar_integrated_conferencing_available=(
                provider in ("google", "exchange") and not cal.readonly
            ),
            calendar_attachments_available=provider == "apple" and not cal.readonly,
            permission_level="sandbox",
        )
        return out

    def profile_json(self, profile: Profile) -> dict[str, Any]:
        out: dict[str, Any] = {
            "provider_name": profile.provider_name,
            "provider_service": profile.provider_service,
            "profile_id": profile.profile_id,
            "profile_name": profile.email,
            "profile_connected": profile.connected,
            "profile_initial_sync_required": profile.initial_sync_due is not None,
        }
        if not profile.connected and profile.relink_url:
            out["profile_relink_url"] = profile.relink_url
        return out

    def account_profiles(self, account: Account) -> list[Profile]:
        if not account.profile_attached:
            return []
        profile = self.profiles.get(account.profile_id)
        return [profile] if profile else []

    def account_calendars(self, account: Account) -> list[Calendar]:
        return [self.calendars[c] for p in self.account_profiles(account) for c in p.calendar_ids]

    # --------------------------------------------------------------------------------------
    # OAuth
    # --------------------------------------------------------------------------------------
    def issue_code(self, profile_id: str, redirect_uri: str, scope: str = DEFAULT_SCOPE) -> str:
        """Create an authorization code as if the user had allowed access for ``profile_id``."""
        with self.lock:
            if profile_id not in self.profiles:
                raise EmulatorError(f"unknown profile {profile_id}", status=404)
            code = _rand(32)
            self.codes[code] = AuthCode(
                code=code,
                client_id=self.client_id,
                redirect_uri=redirect_uri,
                profile_id=profile_id,
                scope=" ".join(scope.split()),
                expires_at=self.now() + CODE_TTL,
            )
            return code

    def _check_client(self, form: dict[str, str]) -> None:
        client_id = form.get("client_id")
        client_secret = form.get("client_secret")
        if not client_id or not client_secret:
            raise ApiError(401, {"error": "invalid_client"})
        ok_id = secrets.compare_digest(client_id.encode(), self.client_id.encode())
        ok_secret = any(
            secrets.compare_digest(client_secret.encode(), s.encode()) for s in list(self.client_secrets)
        )
        if not (ok_id and ok_secret):
            raise ApiError(401, {"error": "invalid_client"})

    def _mint_access(self, sub: str, scope: str) -> AccessToken:
        token = AccessToken(
            token=_rand(32),
            sub=sub,
            scope=scope,
            expires_at=self.now() + timedelta(seconds=self.access_token_ttl),
        )
        self.access_tokens[token.token] = token
        return token

    def _mint_refresh(self, sub: str, scope: str) -> RefreshToken:
        token = RefreshToken(token=_rand(32), sub=sub, scope=scope)
        self.refresh_tokens[token.token] = token
        return token

    def token_endpoint(self, form: dict[str, str]) -> tuple[dict[str, Any], str]:
        """Handle ``POST /oauth/token``; returns the response body and the account's sub."""
        with self.lock:
            self._check_client(form)
            grant_type = form.get("grant_type")
            if not grant_type:
                raise ApiError(400, {"error": "invalid_request", "error_description": "grant_type missing"})
            if grant_type == "authorization_code":
                return self._grant_code(form)
            if grant_type == "refresh_token":
                return self._grant_refresh(form)
            raise ApiError(400, {"error": "unsupported_grant_type"})

    def _grant_code(self, form: dict[str, str]) -> tuple[dict[str, Any], str]:
        code_value = form.get("code")
        redirect_uri = form.get("redirect_uri")
        if not code_value or not redirect_uri:
            raise ApiError(
                400, {"error": "invalid_request", "error_description": "code and redirect_uri are required"}
            )
        code = self.codes.get(code_value)
        if code is None or code.client_id != form.get("client_id"):
            raise ApiError(400, {"error": "invalid_grant"})
        # A presented code is spent whatever happens next (single use).
        del self.codes[code_value]
        if self.now() >= code.expires_at or code.redirect_uri != redirect_uri:
            raise ApiError(400, {"error": "invalid_grant"})
        profile = self.profiles.get(code.profile_id)
        if profile is None:
            raise ApiError(400, {"error": "invalid_grant"})
        sub = self.account_by_profile.get(profile.profile_id)
        account = self.accounts.get(sub) if sub else None
        if account is None:
            account = Account(sub=f"acc_{_hex(24)}", profile_id=profile.profile_id, created=self.now())
            self.accounts[account.sub] = account
            self.account_by_profile[profile.profile_id] = account.sub
        account.revoked = False
        account.profile_attached = True
        account.scope = code.scope
        delay = self.realism.initial_sync_delay
        if delay is not None and not profile.initial_sync_done and profile.initial_sync_due is None:
            profile.initial_sync_due = self.clock.precise() + timedelta(seconds=delay)
        access = self._mint_access(account.sub, code.scope)
        refresh = self._mint_refresh(account.sub, code.scope)
        return {
            "token_type": "bearer",
            "access_token": access.token,
            "expires_in": self.access_token_ttl,
            "refresh_token": refresh.token,
            "scope": code.scope,
            "account_id": account.sub,
            "sub": account.sub,
            "linking_profile": {
                "provider_name": profile.provider_name,
                "provider_service": profile.provider_service,
                "profile_id": profile.profile_id,
                "profile_name": profile.email,
            },
        }, account.sub

    def _grant_refresh(self, form: dict[str, str]) -> tuple[dict[str, Any], str]:
        value = form.get("refresh_token")
        if not value:
            raise ApiError(400, {"error": "invalid_request", "error_description": "refresh_token missing"})
        refresh = self.refresh_tokens.get(value)
        if refresh is None or refresh.revoked:
            raise ApiError(400, {"error": "invalid_grant"})
        account = self.accounts.get(refresh.sub)
        if account is None or account.revoked:
            raise ApiError(400, {"error": "invalid_grant"})
        access = self._mint_access(refresh.sub, refresh.scope)
        if self.rotate_refresh_tokens:
            refresh.revoked = True
            refresh = self._mint_refresh(refresh.sub, refresh.scope)
        return {
            "token_type": "bearer",
            "access_token": access.token,
            "expires_in": self.access_token_ttl,
            "refresh_token": refresh.token,
            "scope": refresh.scope,
        }, refresh.sub

    def revoke_endpoint(self, form: dict[str, str]) -> str | None:
        """Handle ``POST /oauth/token/revoke``; returns the revoked account's sub if any."""
        with self.lock:
            self._check_client(form)
            token = form.get("token")
            sub = form.get("sub")
            if not token and not sub:
                raise ApiError(
                    400, {"error": "invalid_request", "error_description": "token or sub required"}
                )
            if token:
                found = self.refresh_tokens.get(token) or self.access_tokens.get(token)
                sub = found.sub if found else None
            if sub and sub in self.accounts:
                self._revoke_account(sub)
                return sub
            return None

    def _revoke_account(self, sub: str) -> None:
        account = self.accounts[sub]
        account.revoked = True
        for tok in self.access_tokens.values():
            if tok.sub == sub:
                tok.revoked = True
        for ref in self.refresh_tokens.values():
            if ref.sub == sub:
                ref.revoked = True
        for chan in self.channels.values():
            if chan.sub == sub:
                chan.open = False

    def authenticate(self, authorization: str | None) -> tuple[Account, AccessToken]:
        """Resolve a ``Bearer`` header to (account, token) or raise a 401."""
        with self.lock:
            self.tick()
            if not authorization or not authorization.startswith("Bearer "):
                raise _unauthorized("missing bearer token", "invalid_request")
            value = authorization[len("Bearer ") :].strip()
            token = self.access_tokens.get(value)
            if token is None or token.revoked:
                raise _unauthorized("the access token is not recognised or has been revoked")
            if self.now() >= token.expires_at:
                raise _unauthorized("the access token has expired")
            account = self.accounts.get(token.sub)
            if account is None or account.revoked:
                raise _unauthorized("the authorization has been revoked")
            return account, token

    # --------------------------------------------------------------------------------------
    # Helpers used by the API and the control surface
    # --------------------------------------------------------------------------------------
    def _calendar(self, calendar_id: str) -> Calendar:
        cal = self.calendars.get(calendar_id)
        if cal is None:
            raise EmulatorError(f"unknown calendar {calendar_id}", status=404)
        return cal

    def _profile(self, profile_id: str) -> Profile:
        profile = self.profiles.get(profile_id)
        if profile is None:
            raise EmulatorError(f"unknown profile {profile_id}", status=404)
        return profile

    def _find_event(self, cal: Calendar, event_id: str | None, event_uid: str | None) -> Event:
        if (event_id is None) == (event_uid is None):
            raise EmulatorError("give exactly one of event_id or event_uid")
        if event_id is not None:
            uid = cal.managed_index.get(event_id)
            if uid is None:
                raise EmulatorError(f"no event with event_id {event_id} in {cal.calendar_id}", status=404)
            return cal.events[uid]
        event = cal.events.get(event_uid or "")
        if event is None:
            raise EmulatorError(f"no event with event_uid {event_uid} in {cal.calendar_id}", status=404)
        return event

    @staticmethod
    def new_event_uid() -> str:
        return f"evt_external_{_hex(24)}"

    def emit_change(self, calendar_id: str, event: Event | None, changes_since: datetime) -> None:
        """Send ``change`` to every open channel that watches ``calendar_id`` (user-side changes only)."""
        cal = self.calendars[calendar_id]
        sub = self.account_by_profile.get(cal.profile_id)
        if not sub:
            return
        account = self.accounts.get(sub)
        if account is None or account.revoked or not account.profile_attached:
            return
        for chan in self.channels.values():
            if not chan.open or chan.sub != sub:
                continue
            cal_filter = chan.filters.get("calendar_ids")
            if cal_filter and calendar_id not in cal_filter:
                continue
            if chan.filters.get("only_managed") and (event is None or not event.managed):
                continue
            self.emit(chan, {"type": "change", "changes_since": fmt_time(changes_since)})

    def emit(self, chan: Channel, notification: dict[str, Any]) -> None:
        body = encode_notification(notification, chan.body())
        meta = {"channel_id": chan.channel_id, "sub": chan.sub, "type": notification["type"]}
        if "changes_since" in notification:
            meta["changes_since"] = notification["changes_since"]
        self._notify(chan.callback_url, body, meta)

    # --------------------------------------------------------------------------------------
    # Control API: the calendar owner's and the operator's actions
    # --------------------------------------------------------------------------------------
    def _bounds(self, start: Any, end: Any) -> tuple[str, str, bool]:
        try:
            start_wire = coerce_time_or_date(start)
            end_wire = coerce_time_or_date(end)
        except ValueError as exc:
            raise EmulatorError(str(exc)) from None
        timed = is_time_string(start_wire)
        if timed != is_time_string(end_wire):
            raise EmulatorError("start and end must both be times or both be dates")
        if timed:
            if parse_time(end_wire) <= parse_time(start_wire):
                raise EmulatorError("end must be after start")
        elif parse_date(end_wire) <= parse_date(start_wire):
            raise EmulatorError("end must be after start (dates: end is exclusive)")
        return start_wire, end_wire, not timed

    def move_event(
        self,
        calendar_id: str,
        event_id: str | None = None,
        event_uid: str | None = None,
        *,
        start: Any,
        end: Any,
    ) -> dict[str, Any]:
        with self.lock:
            self.tick()
            cal = self._calendar(calendar_id)
            event = self._find_event(cal, event_id, event_uid)
            if event.deleted:
                raise EmulatorError("the event is deleted; it cannot be moved", status=409)
            start_wire, end_wire, all_day = self._bounds(start, end)
            before = self.now() - ONE_SECOND
            event.start, event.end, event.all_day = start_wire, end_wire, all_day
            if not all_day and event.start_tzid is None:
                event.start_tzid = event.end_tzid = "Etc/UTC"
            event.spans.append((start_wire, end_wire))
            event.updated = event.external_updated = self.now()
            self.emit_change(calendar_id, event, before)
            return event.snapshot()

    def drift_event(
        self,
        calendar_id: str,
        event_id: str,
        *,
        start: Any = None,
        end: Any = None,
        summary: str | None = None,
        vanish: bool = False,
    ) -> None:
        """Operator tool: change or lose an event *silently* (no `updated` bump, no notification, no
        tombstone), as provider-side drift or a lost notification would leave it."""
        with self.lock:
            self.tick()
            cal = self._calendar(calendar_id)
            event = self._find_event(cal, event_id, None)
            if vanish:
                del cal.events[event.event_uid]
                del cal.managed_index[event_id]
                return
            if start is not None and end is not None:
                event.start, event.end, event.all_day = self._bounds(start, end)
            if summary is not None:
                event.summary = summary

    def delete_event_as_user(
        self, calendar_id: str, event_id: str | None = None, event_uid: str | None = None
    ) -> dict[str, Any]:
        with self.lock:
            self.tick()
            cal = self._calendar(calendar_id)
            event = self._find_event(cal, event_id, event_uid)
            if not event.deleted:
                before = self.now() - ONE_SECOND
                event.deleted = True
                event.deleted_by = "user"
                event.status = "cancelled"
                event.updated = event.external_updated = self.now()
                self.emit_change(calendar_id, event, before)
            return event.snapshot()

    def add_external_event(
        self,
        calendar_id: str,
        summary: str,
        start: Any,
        end: Any,
        transparency: str = "opaque",
        status: str = "confirmed",
        *,
        description: str = "",
        location: str | None = None,
        tzid: str = "Etc/UTC",
        recurring: bool = False,
        event_private: bool = False,
    ) -> str:
        if transparency not in ("opaque", "transparent"):
            raise EmulatorError("transparency must be opaque or transparent")
        if status not in ("confirmed", "tentative"):
            raise EmulatorError("status must be confirmed or tentative")
        if not isinstance(summary, str) or not summary:
            raise EmulatorError("summary is required")
        with self.lock:
            self.tick()
            cal = self._calendar(calendar_id)
            profile = self.profiles[cal.profile_id]
            start_wire, end_wire, all_day = self._bounds(start, end)
            now = self.now()
            uid = self.new_event_uid()
            event = Event(
                calendar_id=calendar_id,
                event_uid=uid,
                event_id=None,
                summary=summary,
                start=start_wire,
                end=end_wire,
                all_day=all_day,
                start_tzid=None if all_day else tzid,
                end_tzid=None if all_day else tzid,
                created=now,
                updated=now,
                description=description,
                location={"description": location} if location else None,
                transparency=transparency,
                status=status,
                organizer={"email": profile.email, "display_name": profile.name},
                recurring=recurring,
                series_identifier=_hex(10) if recurring else None,
                event_private=event_private,
                spans=[(start_wire, end_wire)],
                external_updated=now,
            )
            cal.events[uid] = event
            self.emit_change(calendar_id, event, now - ONE_SECOND)
            return uid

    def set_zoneinfo(self, profile_id: str, zoneinfo: str) -> dict[str, Any]:
        """The account's owner changes their time zone (Cronofy sends no notification for it)."""
        get_zone(zoneinfo)  # an IANA name, as Cronofy's userinfo gives
        with self.lock:
            self._profile(profile_id).zoneinfo = zoneinfo
            return {"profile_id": profile_id, "zoneinfo": zoneinfo}

    def disconnect_profile(self, profile_id: str) -> dict[str, Any]:
        with self.lock:
            profile = self._profile(profile_id)
            if profile.connected:
                profile.connected = False
                query = urllib.parse.urlencode({"email": profile.email})
                profile.relink_url = f"{self.base_url}/relink/{profile.provider_name}?{query}"
                sub = self.account_by_profile.get(profile_id)
                account = self.accounts.get(sub) if sub else None
                if account and not account.revoked and account.profile_attached:
                    for chan in self.channels.values():
                        if chan.open and chan.sub == account.sub:
                            self.emit(chan, {"type": "profile_disconnected"})
            return self.profile_json(profile)

    def reconnect_profile(self, profile_id: str) -> dict[str, Any]:
        with self.lock:
            profile = self._profile(profile_id)
            profile.connected = True
            profile.relink_url = None
            return self.profile_json(profile)

    def revoke_account(self, sub: str) -> dict[str, Any]:
        with self.lock:
            if sub not in self.accounts:
                raise EmulatorError(f"unknown account {sub}", status=404)
            self._revoke_account(sub)
            return self.account_state(sub)

    def close_channel(self, channel_id: str) -> dict[str, Any]:
        with self.lock:
            chan = self.channels.get(channel_id)
            if chan is None:
                raise EmulatorError(f"unknown channel {channel_id}", status=404)
            chan.open = False
            return {**chan.body(), "sub": chan.sub, "open": chan.open}

    # --------------------------------------------------------------------------------------
    # Inspection
    # --------------------------------------------------------------------------------------
    def events(self, calendar_id: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        with self.lock:
            self.tick()
            cal = self._calendar(calendar_id)
            items = [e for e in cal.events.values() if include_deleted or not e.deleted]
            items.sort(key=lambda e: (e.start, e.event_uid))
            return [e.snapshot() for e in items]

    def account_state(self, sub: str) -> dict[str, Any]:
        with self.lock:
            account = self.accounts.get(sub)
            if account is None:
                raise EmulatorError(f"unknown account {sub}", status=404)
            self.tick()
            now = self.now()
            tokens_valid = any(r.sub == sub and not r.revoked for r in self.refresh_tokens.values()) or any(
                a.sub == sub and not a.revoked and now < a.expires_at for a in self.access_tokens.values()
            )
            profile = self.profiles.get(account.profile_id)
            return {
                "sub": sub,
                "profile_id": account.profile_id,
                "profile_connected": bool(profile and profile.connected),
                "profile_attached": account.profile_attached,
                "scope": account.scope,
                "revoked": account.revoked,
                "tokens_valid": tokens_valid and not account.revoked,
                "channels": self.channels_list(sub),
            }

    def channels_list(self, sub: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {**c.body(), "sub": c.sub}
                for c in self.channels.values()
                if c.open and (sub is None or c.sub == sub)
            ]

    def summary(self) -> dict[str, Any]:
        with self.lock:
            self.tick()
            return {
                "now": fmt_time(self.now()),
                "profiles": self.list_profiles(),
                "accounts": [self.account_state(s) for s in self.accounts],
                "channels": self.channels_list(),
                "event_counts": {
                    cid: sum(1 for e in cal.events.values() if not e.deleted)
                    for cid, cal in self.calendars.items()
                },
            }


def _unauthorized(description: str, error: str = "invalid_token") -> ApiError:
    header = f'Bearer realm="cronofy", error="{error}", error_description="{description}"'
    return ApiError(401, None, {"WWW-Authenticate": header})
