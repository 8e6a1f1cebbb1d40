"""An event as Cronofy's Read Events returns it, typed, and the two things the rules send back: the
/v1/batch entries of our writes.

Notifications, the reconciler and the busy periods all read the same raw event dicts; wrapping them
once here means one place knows Cronofy's field names, how its times compare with ours (whole
seconds, `...Z`; all-day events carry a date) and which events are SolarNexus's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from calsync.clock import parse_utc

SOLARNEXUS_PREFIXES = ("sn-", "snh-")


def cronofy_time(text: str) -> str:
    """Cronofy rejects non-zero milliseconds: whole seconds only."""
    return parse_utc(text).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalized(value: str) -> str:
    """A start or end as Cronofy writes it (whole seconds, Z); dates (all-day events) unchanged."""
    return value if len(value) == 10 else cronofy_time(value)


def is_solarnexus(event_id: str | None) -> bool:
    """Is this event id one of ours (`sn-…`, or `snh-…` for hashed milestone ids)?"""
    return (event_id or "").startswith(SOLARNEXUS_PREFIXES)


@dataclass(frozen=True)
class CronofyEvent:
    """The fields of a Read Events entry the rules use. Times stay as Cronofy sent them (strings)."""

    event_id: str | None = None
    event_uid: str | None = None
    calendar_id: str | None = None
    start: Any = None  # a Time ("…Z") or a Date ("YYYY-MM-DD"); anything else is not a busy period
    end: Any = None
    summary: str | None = None
    updated: str | None = None
    created: str | None = None
    deleted: bool = False
    recurring: bool = False
    transparency: str | None = None
    status: str | None = None
    participation_status: str | None = None

    @classmethod
    def of(cls, raw: CronofyEvent | Mapping[str, Any]) -> CronofyEvent:
        if isinstance(raw, CronofyEvent):
            return raw
        return cls(
            event_id=raw.get("event_id"), event_uid=raw.get("event_uid"), calendar_id=raw.get("calendar_id"),
            start=raw.get("start"), end=raw.get("end"), summary=raw.get("summary"), updated=raw.get("updated"),
            created=raw.get("created"), deleted=bool(raw.get("deleted")), recurring=bool(raw.get("recurring")),
            transparency=raw.get("transparency"), status=raw.get("status"),
            participation_status=raw.get("participation_status"))

    @property
    def solarnexus(self) -> bool:
        return is_solarnexus(self.event_id)

    @property
    def updated_at(self) -> datetime | None:
        """When the calendar last changed the event (Cronofy's `updated`, whole seconds)."""
        return parse_utc(self.updated) if self.updated else None

    def times(self) -> tuple[str, str]:
        """Start and end as we compare them with what we pushed."""
        return normalized(self.start), normalized(self.end)


def events_of(raw_events: Iterable[Mapping[str, Any]]) -> Iterator[CronofyEvent]:
    """Read Events' answer (dicts, read page by page) as typed events, still page by page."""
    return (CronofyEvent.of(e) for e in raw_events)


def _events_url(calendar_id: str) -> str:
    return f"/v1/calendars/{calendar_id}/events"


def upsert_entry(calendar_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """A /v1/batch entry that creates or updates (by `event_id`) an event of ours."""
    return {"method": "POST", "relative_url": _events_url(calendar_id), "data": body}


def delete_entry(calendar_id: str, event_id: str) -> dict[str, Any]:
    """A /v1/batch entry that deletes an event of ours by its `event_id`."""
    return {"method": "DELETE", "relative_url": _events_url(calendar_id), "data": {"event_id": event_id}}
