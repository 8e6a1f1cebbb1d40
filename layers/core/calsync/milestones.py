"""Milestones as the core platform sends them (ARCHITECTURE §3) and the calendar event each one
becomes (§5)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)

from calsync.clock import parse_utc
from calsync.cronofy_event import cronofy_time
from calsync.messages import Envelope, Id
from calsync.observability import logger

_UTC_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,60}$")

FALLBACK_ZONE = "Etc/UTC"
YEARS = (2000, 2100)  # a scheduled milestone outside them is a typo (year 9999 overflows a date + 1 day)
SUMMARY_LIMIT = 1024
DESCRIPTION_LIMIT = 4096
MANAGED_LINE = (
    "Managed by SolarNexus. Moving this event reschedules it in SolarNexus; edit other details in SolarNexus."
)


def in_accepted_years(*times: str) -> bool:
    """Whether every one of these ISO times or dates falls in the years the core platform accepts for a
    scheduled milestone (YEARS): the one rule for a milestone message and for a calendar-side move."""
    try:
        return all(YEARS[0] <= int(t[:4]) < YEARS[1] for t in times)
    except (TypeError, ValueError):
        return False


class Customer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    # The schema types name as a string; a null is taken as left out (harmless, and mirrors stored
    # with nulls stay readable).
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    address: str | None = None


class Milestone(BaseModel):
    model_config = ConfigDict(extra="ignore")

    milestone_id: Id
    # Strict: the schema's integer and boolean, not "2", 2.0 or true for a version (pydantic's lax mode
    # would take them, and a producer sending them is broken: its message goes to the DLQ).
    version: StrictInt = Field(ge=0)
    project_id: Id | None = None
    name: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    assignee_user_ids: list[Id]
    start: str | None
    end: str | None
    all_day: StrictBool
    timezone: str
    status: Literal["scheduled", "unscheduled", "cancelled", "completed"]
    customer: Customer | None = None
    notes: str | None = None
    url: str | None = None

    @field_validator("assignee_user_ids")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("assignee_user_ids must be unique")
        return value

    @field_validator("timezone")
    @classmethod
    def _iana(cls, value: str) -> str:
        """The schema allows any string. A name that is not an IANA zone cannot be a calendar event's
        `tzid`; the times are UTC instants anyway, so the event is written in UTC rather than refused
        (a refusal would leave the previous version on the calendar)."""
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            logger.warning("milestone time zone is not an IANA name: written in UTC", extra={"timezone": value})
            return FALLBACK_ZONE
        return value

    @model_validator(mode="after")
    def _times(self) -> Milestone:
        """Times are checked only for a milestone that goes on calendars. `start: null` or a status other
        than `scheduled` means "on no calendar" whatever else it carries (ARCHITECTURE §3), so such a
        message is always taken, and removes the event an earlier version put there."""
        if not self.on_calendar:
            return self
        start, end = self.start, self.end
        if start is None or end is None:
            raise ValueError("a scheduled milestone with a start needs an end")
        pattern, kind = (_DATE, "dates (YYYY-MM-DD)") if self.all_day else (_UTC_TIME, "UTC times (…Z)")
        if not pattern.match(start) or not pattern.match(end):
            raise ValueError(f"{'all-day' if self.all_day else 'timed'} milestones need {kind} for start and end")
        if not in_accepted_years(start, end):
            raise ValueError(f"a scheduled milestone's times are in the years {YEARS[0]}-{YEARS[1] - 1}")
        if self.all_day:
            if date.fromisoformat(end) < date.fromisoformat(start):
                raise ValueError("end is before start")
        elif parse_utc(end) <= parse_utc(start):
            raise ValueError("end must be after start")
        return self

    @property
    def on_calendar(self) -> bool:
        """Only scheduled milestones with times belong on a calendar."""
        return self.status == "scheduled" and self.start is not None

    def starts_at(self) -> datetime:
        """The start as a UTC instant (all-day: midnight in the milestone's zone)."""
        assert self.start is not None
        if self.all_day:
            local = datetime.combine(date.fromisoformat(self.start), datetime.min.time(), ZoneInfo(self.timezone))
            return local.astimezone(UTC)
        return parse_utc(self.start)


class MilestoneUpserted(Envelope):
    type: Literal["milestone.upserted"]
    milestone: Milestone


class MilestoneDeleted(Envelope):
    type: Literal["milestone.deleted"]
    milestone_id: Id
    version: StrictInt = Field(ge=0)


MilestoneMessage = Annotated[MilestoneUpserted | MilestoneDeleted, Field(discriminator="type")]


def event_id_for(milestone_id: str) -> str:
    """Stable, URL-safe Cronofy event_id derived from the milestone id ("sn-" + id, or "snh-" + a hash
    for ids with other characters or over 60 long)."""
    if _SAFE_ID.match(milestone_id):
        return f"sn-{milestone_id}"
    return "snh-" + hashlib.sha256(milestone_id.encode()).hexdigest()[:40]


def milestone_id_from_event_id(event_id: str) -> str | None:
    """The milestone id when the event id carries it; None for hashed ids (look those up) or foreign ids."""
    if event_id.startswith("sn-"):
        return event_id[3:]
    return None


def _clip(text: str, room: int) -> str:
    return text if len(text) <= room else text[:max(room - 1, 0)] + "…"


def description_of(m: Milestone, customer: Customer) -> str:
    """Customer lines, notes, the project link and the managed-by line (§5), within Cronofy's limit.
    When it is too long the notes are shortened first, then the customer lines: the project link and
    the line saying SolarNexus manages the event are always kept whole."""
    head = [f"{label}: {value}" for label, value in (("Customer", customer.name), ("Phone", customer.phone),
                                                      ("Email", customer.email), ("Address", customer.address))
            if value]
    tail = ([f"Project: {m.url[:DESCRIPTION_LIMIT // 4]}"] if m.url else []) + [MANAGED_LINE]
    tail_text = "\n\n".join(tail)
    room = DESCRIPTION_LIMIT - len(tail_text) - 2
    head_text = _clip("\n".join(head), room)
    if not m.notes:
        return "\n\n".join(part for part in (head_text, tail_text) if part)
    notes_room = room - len(head_text) - (2 if head_text else 0)
    notes = _clip(m.notes, notes_room) if notes_room > 1 else ""
    return "\n\n".join(part for part in (head_text, notes, tail_text) if part)


def calendar_event(m: Milestone) -> dict:
    """The Cronofy upsert body for a scheduled milestone (ARCHITECTURE §5)."""
    assert m.on_calendar and m.start and m.end
    customer = m.customer or Customer()
    summary = f"{m.name} - {customer.name}" if customer.name else m.name
    event: dict = {
        "event_id": event_id_for(m.milestone_id),
        "summary": summary[:SUMMARY_LIMIT],
        "description": description_of(m, customer),
        "tzid": m.timezone,
        "transparency": "opaque",
    }
    if m.all_day:
        end = m.end
        if end <= m.start:  # a one-day milestone sent with end == start: Cronofy's end is exclusive
            end = (date.fromisoformat(m.start) + timedelta(days=1)).isoformat()
        event["start"], event["end"] = m.start, end
    else:
        event["start"] = {"time": cronofy_time(m.start), "tzid": m.timezone}
        event["end"] = {"time": cronofy_time(m.end), "tzid": m.timezone}
    if customer.address:
        event["location"] = {"description": customer.address}
    if m.url:
        event["url"] = m.url
    return event


def content_hash(event: dict) -> str:
    return hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest()[:20]
