"""The emulated Cronofy tenant: everything it holds, under one lock, and the bookkeeping around it.

``EmulatorState`` owns the identities (profiles, calendars, accounts, the OAuth codes and tokens),
events, channels, the clock, writes that land later, and notification emission. The rules that act
on it live beside it: OAuth in ``oauth.py``, the calendar owner's actions in ``actions.py``, the
``/v1`` endpoints in ``api.py``. The data types are in ``model.py``.
"""

from __future__ import annotations

import string
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from .errors import EmulatorError
from .model import (
    AUTHORIZE_PROVIDERS,
    PROVIDERS,
    AccessToken,
    Account,
    AuthCode,
    Calendar,
    Channel,
    Clock,
    Event,
    NotifySink,
    PendingWrite,
    Profile,
    RefreshToken,
    random_hex,
    random_id,
)
from .notify import encode_notification
from .realism import Realism
from .timefmt import fmt_time, whole_seconds


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
            # lookups kept beside the dicts above, so one account's request never walks every account's
            # items (20,000 accounts in the capacity benchmark): channels by account, the profiles whose
            # initial sync is running (insertion-ordered), the (provider, e-mail) pairs taken
            self._channels_by_sub: dict[str, list[Channel]] = {}
            self._initial_syncs: dict[str, None] = {}
            self._emails: set[tuple[str, str]] = set()
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
            for profile_id in list(self._initial_syncs):
                profile = self.profiles.get(profile_id)
                if profile is None or profile.initial_sync_due is None:
                    self._initial_syncs.pop(profile_id, None)
                elif flush or profile.initial_sync_due <= now:
                    self._initial_syncs.pop(profile_id, None)
                    self._complete_initial_sync(profile)

    def start_initial_sync(self, profile: Profile, due: datetime) -> None:
        with self.lock:
            profile.initial_sync_due = due
            self._initial_syncs[profile.profile_id] = None

    def add_channel(self, chan: Channel) -> None:
        with self.lock:
            self.channels[chan.channel_id] = chan
            self._channels_by_sub.setdefault(chan.sub, []).append(chan)

    def channels_of(self, sub: str) -> list[Channel]:
        """The account's channels (open or closed), oldest first."""
        with self.lock:
            return list(self._channels_by_sub.get(sub, ()))

    def _complete_initial_sync(self, profile: Profile) -> None:
        profile.initial_sync_due = None
        profile.initial_sync_done = True
        sub = self.account_by_profile.get(profile.profile_id)
        account = self.accounts.get(sub) if sub else None
        if account is None or account.revoked or not account.profile_attached:
            return
        # Channels created after this moment never hear of it (Cronofy skips it for them).
        for chan in self.channels_of(account.sub):
            if chan.open:
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
        """Seed a calendar account (a Cronofy profile) with its calendars.

        ``calendars``: ``[{"name", "readonly"=False, "primary"=False, "deleted"=False}]``; default one
        writable primary calendar named after the e-mail.
        """
        key = (provider or "").strip().lower()
        if key not in PROVIDERS:
            raise EmulatorError(f"unknown provider {provider!r}; use google, microsoft or apple")
        if not isinstance(email, str) or "@" not in email:
            raise EmulatorError("email must be an e-mail address")
        provider_name, service = PROVIDERS[key]
        if service is None:
            service = "google" if email.lower().endswith(("@gmail.com", "@googlemail.com")) else "gsuite"
        calendars = calendars if calendars is not None else [{"name": email, "primary": True}]
        if not isinstance(calendars, list) or not calendars:
            raise EmulatorError("calendars must be a non-empty list")
        with self.lock:
            if (provider_name, email.lower()) in self._emails:
                raise EmulatorError(f"{email} already has a {provider_name} account", status=409)
            suffix = random_id(16)
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
                    calendar_id=f"cal_{suffix}_{random_id(10, string.ascii_lowercase + string.digits)}",
                    profile_id=profile.profile_id,
                    name=spec.get("name") or email,
                    readonly=bool(spec.get("readonly", False)),
                    primary=bool(spec.get("primary", False)),
                    deleted=bool(spec.get("deleted", False)),
                )
                self.calendars[cal.calendar_id] = cal
                profile.calendar_ids.append(cal.calendar_id)
            self.profiles[profile.profile_id] = profile
            self._emails.add((provider_name, email.lower()))
            return {
                "profile_id": profile.profile_id,
                "profile_name": profile.email,
                "provider_name": profile.provider_name,
                "provider_service": profile.provider_service,
                "email": profile.email,
                "name": profile.name,
                "calendars": [self.calendar_json(self.calendars[c]) for c in profile.calendar_ids],
            }

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

    def revoke_grants(self, sub: str) -> None:
        """The account is revoked: its tokens stop working and its channels close."""
        account = self.accounts[sub]
        account.revoked = True
        for tok in self.access_tokens.values():
            if tok.sub == sub:
                tok.revoked = True
        for ref in self.refresh_tokens.values():
            if ref.sub == sub:
                ref.revoked = True
        for chan in self.channels_of(sub):
            chan.open = False

    # --------------------------------------------------------------------------------------
    # Lookups used by the API, OAuth and the calendar-owner actions
    # --------------------------------------------------------------------------------------
    def calendar(self, calendar_id: str) -> Calendar:
        cal = self.calendars.get(calendar_id)
        if cal is None:
            raise EmulatorError(f"unknown calendar {calendar_id}", status=404)
        return cal

    def profile(self, profile_id: str) -> Profile:
        profile = self.profiles.get(profile_id)
        if profile is None:
            raise EmulatorError(f"unknown profile {profile_id}", status=404)
        return profile

    def find_event(self, cal: Calendar, event_id: str | None, event_uid: str | None) -> Event:
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
        return f"evt_external_{random_hex(24)}"

    def emit_change(self, calendar_id: str, event: Event | None, changes_since: datetime) -> None:
        """Send ``change`` to every open channel that watches ``calendar_id`` (user-side changes only)."""
        cal = self.calendars[calendar_id]
        sub = self.account_by_profile.get(cal.profile_id)
        if not sub:
            return
        account = self.accounts.get(sub)
        if account is None or account.revoked or not account.profile_attached:
            return
        for chan in self.channels_of(sub):
            if not chan.open:
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
    # Inspection
    # --------------------------------------------------------------------------------------
    def events(self, calendar_id: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        with self.lock:
            self.tick()
            cal = self.calendar(calendar_id)
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
