"""A fake Cronofy, in process: the `calsync.ports.UserCalendar` calls the rules make, with the Cronofy
semantics they rely on (docs.cronofy.com; /work/shared/reference/cronofy-api.md), and nothing else.

- Events live per calendar. Ours are *managed*: upserted by `event_id` (a second upsert with the same
  id updates the event, and brings back a deleted one); the user's own have only an `event_uid`.
- A delete leaves a tombstone (`deleted: true`, read only with `include_deleted`); deleting an event
  that is not there is accepted (202), as Cronofy does.
- Read Events: managed events only with `include_managed` or `only_managed`; `only_managed` leaves
  out the user's own; `last_modified` keeps events updated at or after it; `from`/`to` keep events
  starting in [from, to) (by date); times come back as whole-second `...Z` strings or dates.
- Every change is recorded (`changes`) with who made it, so a test can turn our writes into the
  echo notifications Cronofy would send, and the user's moves into real ones.
- `revoke(user_id)` makes every later call of that user's client raise InvalidGrant; `outage`
  makes batch writes answer `fail_status` per entry (e.g. 422 refused, or raise CronofyUnavailable).

Writes apply at once (the real service answers 202 and applies later; the emulator models that).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from calsync.clock import iso, parse_utc, utcnow
from calsync.cronofy import BATCH_LIMIT, BatchItemResult, Channel, CronofyUnavailable, InvalidGrant
from calsync.cronofy_event import normalized
from calsync.models import Calendar

EVENTS_PATH = "/v1/calendars/"
PAGE_SIZE = 50  # events per Read Events page (pages_read; the fake answers in one go)


@dataclass
class FakeEvent:
    calendar_id: str
    event_uid: str
    start: str
    end: str
    updated: datetime
    event_id: str | None = None  # managed (ours) when set
    summary: str = ""
    deleted: bool = False
    transparency: str = "opaque"
    status: str = "confirmed"

    @property
    def managed(self) -> bool:
        return self.event_id is not None

    def as_read(self) -> dict[str, Any]:
        """The event as Read Events returns it."""
        out: dict[str, Any] = {"calendar_id": self.calendar_id, "event_uid": self.event_uid,
                               "summary": self.summary, "start": self.start, "end": self.end,
                               "deleted": self.deleted, "updated": iso(self.updated),
                               "transparency": self.transparency, "status": self.status,
                               "participation_status": "accepted", "recurring": False}
        if self.managed:
            out["event_id"] = self.event_id
        return out


@dataclass(frozen=True)
class Change:
    """One change of an event, as a notification would announce it."""

    user_id: str
    calendar_id: str
    event_uid: str
    event_id: str | None
    by: Literal["app", "user"]
    kind: Literal["upsert", "delete"]
    at: datetime


def _times(body: dict[str, Any]) -> tuple[str, str]:
    start, end = body["start"], body["end"]
    if isinstance(start, dict):
        start, end = start["time"], end["time"]
    return normalized(start), normalized(end)


@dataclass
class FakeAccount:
    user_id: str
    calendars: dict[str, dict[str, FakeEvent]] = field(default_factory=dict)  # calendar -> uid -> event
    channels: dict[str, Channel] = field(default_factory=dict)
    revoked: bool = False
    unwritable: set[str] = field(default_factory=set)  # calendars deleted or made read-only
    zoneinfo: str = "Europe/London"
    profile_connected: bool | None = None  # None: userinfo lists no profile (Cronofy cannot confirm one)
    notified: int = 0  # changes (of everyone's) already announced to this user's channel
    last_since: str | None = None


class FakeCronofy:
    """Every user's calendars. `client(user_id)` is that user's `UserCalendar`."""

    def __init__(self, clock: Callable[[], datetime] = utcnow):
        self.clock = clock
        self.accounts: dict[str, FakeAccount] = {}
        self.changes: list[Change] = []
        self.requests_sent = 0  # calsync.ports.RequestCounter
        self.batches: list[list[dict[str, Any]]] = []
        self.outage: int | None = None  # a status every batch entry answers with, or 503 for the request
        self._uids = itertools.count(1)

    def new_uid(self, prefix: str = "evt") -> str:
        return f"{prefix}_{next(self._uids)}"

    def account(self, user_id: str, *calendar_ids: str) -> FakeAccount:
        account = self.accounts.setdefault(user_id, FakeAccount(user_id))
        for calendar_id in calendar_ids:
            account.calendars.setdefault(calendar_id, {})
        return account

    def client(self, user_id: str) -> FakeUserCalendar:
        return FakeUserCalendar(self, self.account(user_id))

    def revoke(self, user_id: str) -> None:
        self.account(user_id).revoked = True

    # ---- looking at calendars --------------------------------------------------------------------

    def events(self, user_id: str, calendar_id: str | None = None, deleted: bool = False) -> list[FakeEvent]:
        account = self.account(user_id)
        return [e for cal, events in sorted(account.calendars.items()) if calendar_id in (None, cal)
                for e in events.values() if e.deleted == deleted]

    def managed(self, user_id: str) -> dict[tuple[str, str], tuple[str, str, str]]:
        """(calendar_id, event_id) -> (summary, start, end) of every live event of ours: "the calendar"."""
        return {(e.calendar_id, e.event_id): (e.summary, e.start, e.end)
                for e in self.events(user_id) if e.event_id is not None}

    def find(self, user_id: str, event_id: str) -> FakeEvent | None:
        return next((e for e in self.events(user_id) if e.event_id == event_id), None)

    # ---- what a person does on their calendar ----------------------------------------------------

    def user_moves(self, user_id: str, event_id: str, start: str, end: str) -> FakeEvent:
        event = self.find(user_id, event_id)
        assert event is not None, f"{event_id} is not on {user_id}'s calendar"
        event.start, event.end, event.updated = start, end, self.clock()
        self.record(user_id, event, "user", "upsert")
        return event

    def user_deletes(self, user_id: str, event_id: str) -> FakeEvent:
        event = self.find(user_id, event_id)
        assert event is not None, f"{event_id} is not on {user_id}'s calendar"
        event.deleted, event.status, event.updated = True, "cancelled", self.clock()
        self.record(user_id, event, "user", "delete")
        return event

    def user_adds(self, user_id: str, calendar_id: str, start: str, end: str, **fields: Any) -> FakeEvent:
        event = FakeEvent(calendar_id, self.new_uid(), start, end, self.clock(), **fields)
        self.account(user_id, calendar_id).calendars[calendar_id][event.event_uid] = event
        self.record(user_id, event, "user", "upsert")
        return event

    def record(self, user_id: str, event: FakeEvent, by: Literal["app", "user"],
                kind: Literal["upsert", "delete"]) -> None:
        self.changes.append(Change(user_id, event.calendar_id, event.event_uid, event.event_id, by, kind,
                                   event.updated))

    def notification(self, user_id: str, channel_id: str) -> dict[str, Any]:
        """The `change` notification Cronofy sends for this user's changes since its previous one (ours:
        their echo; the user's: moves and deletes): `changes_since` is when the first of them happened.
        With no change since, the previous notification again (Cronofy delivers at least once)."""
        account = self.account(user_id)
        pending = [c for c in self.changes[account.notified:] if c.user_id == user_id]
        account.notified = len(self.changes)
        if pending:
            account.last_since = iso(min(c.at for c in pending))
        return {"notification_type": "change", "channel_id": channel_id, "user_id": user_id,
                "changes_since": account.last_since}

    # ---- the API -----------------------------------------------------------------------------------

    def request(self, account: FakeAccount) -> None:
        """Count a request of this user's (refused once the grant is revoked)."""
        self.requests_sent += 1
        if account.revoked:
            raise InvalidGrant("invalid_grant", status=400)

    def _write(self, account: FakeAccount, entry: dict[str, Any]) -> int:
        url = entry["relative_url"]
        assert url.startswith(EVENTS_PATH) and url.endswith("/events"), url
        calendar_id = url[len(EVENTS_PATH):-len("/events")]
        calendar = account.calendars.get(calendar_id)
        if calendar is None:
            return 404
        data = entry["data"]
        event = next((e for e in calendar.values() if e.event_id == data["event_id"]), None)
        now = self.clock()
        if entry["method"] == "DELETE":
            if event is not None and not event.deleted:
                event.deleted, event.status, event.updated = True, "cancelled", now
                self.record(account.user_id, event, "app", "delete")
            return 202
        start, end = _times(data)
        if event is None:
            event = FakeEvent(calendar_id, self.new_uid(), start, end, now, event_id=data["event_id"])
            calendar[event.event_uid] = event
        event.start, event.end, event.summary = start, end, data.get("summary", "")
        event.transparency = data.get("transparency", "opaque")
        event.deleted, event.status, event.updated = False, "confirmed", now
        self.record(account.user_id, event, "app", "upsert")
        return 202

    def batch(self, account: FakeAccount, entries: list[dict[str, Any]]) -> list[BatchItemResult]:
        self.request(account)
        if not 0 < len(entries) <= BATCH_LIMIT:
            raise ValueError(f"a batch holds 1..{BATCH_LIMIT} entries, got {len(entries)}")
        if self.outage == 503:
            raise CronofyUnavailable("503", status=503)
        self.batches.append(entries)
        if self.outage is not None:
            return [BatchItemResult(status=self.outage, data={"errors": {}}) for _ in entries]
        return [BatchItemResult(status=self._write(account, entry)) for entry in entries]

    def read_events(self, account: FakeAccount, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        self.request(account)
        only_managed = bool(params.get("only_managed"))
        include_managed = bool(params.get("include_managed")) or only_managed
        include_deleted = bool(params.get("include_deleted"))
        since = parse_utc(params["last_modified"]) if params.get("last_modified") else None
        first, last = params.get("from"), params.get("to")
        found = []
        for calendar in account.calendars.values():
            for event in calendar.values():
                if (event.deleted and not include_deleted) or (event.managed and not include_managed):
                    continue
                if only_managed and not event.managed:
                    continue
                if since is not None and event.updated < since:
                    continue
                if (first and event.start[:10] < first) or (last and event.start[:10] >= last):
                    continue
                found.append(replace(event))
        found.sort(key=lambda e: (e.start, e.event_uid))
        return iter([e.as_read() for e in found])


class FakeUserCalendar:
    """One user's client: implements calsync.ports.UserCalendar."""

    def __init__(self, cronofy: FakeCronofy, account: FakeAccount):
        self.cronofy = cronofy
        self.account = account
        self.pages_read = 0

    def batch(self, entries: list[dict[str, Any]]) -> list[BatchItemResult]:
        return self.cronofy.batch(self.account, entries)

    def read_events(self, **params: Any) -> Iterator[dict[str, Any]]:
        events = list(self.cronofy.read_events(self.account, params))
        self.pages_read = max(1, -(-len(events) // PAGE_SIZE))
        return iter(events)

    def bulk_delete(self, *, delete_all: bool = False, calendar_ids: list[str] | None = None) -> None:
        self.cronofy.request(self.account)
        for calendar_id, calendar in self.account.calendars.items():
            if delete_all or calendar_id in (calendar_ids or []):
                for event in calendar.values():
                    if event.managed and not event.deleted:
                        event.deleted, event.status, event.updated = True, "cancelled", self.cronofy.clock()
                        self.cronofy.record(self.account.user_id, event, "app", "delete")

    def list_channels(self) -> list[Channel]:
        self.cronofy.request(self.account)
        return list(self.account.channels.values())

    def create_channel(self, callback_url: str, filters: dict[str, Any] | None = None) -> Channel:
        self.cronofy.request(self.account)
        channel = Channel(channel_id=self.cronofy.new_uid("chn"), callback_url=callback_url,
                          filters=filters or {})
        self.account.channels[channel.channel_id] = channel
        return channel

    def userinfo(self) -> dict[str, Any]:
        self.cronofy.request(self.account)
        info: dict[str, Any] = {"sub": f"acc_{self.account.user_id}", "zoneinfo": self.account.zoneinfo}
        if self.account.profile_connected is not None:
            profile = {"profile_id": None, "profile_connected": self.account.profile_connected}
            info["cronofy.data"] = {"profiles": [profile]}
        return info

    def calendars(self) -> list[Calendar]:
        self.cronofy.request(self.account)
        return [Calendar(calendar_id=c, calendar_name=c, calendar_readonly=c in self.account.unwritable)
                for c in self.account.calendars]
