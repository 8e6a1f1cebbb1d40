"""Milestones as the core platform sends them (ARCHITECTURE §3) and the calendar event each one
becomes (§5)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from calsync.clock import parse_utc
from calsync.cronofy_event import cronofy_time
from calsync.messages import Envelope, Id

_UTC_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,60}$")

SUMMARY_LIMIT = 1024
DESCRIPTION_LIMIT = 4096
MANAGED_LINE = (
    "Managed by SolarNexus. Moving this event reschedules it in SolarNexus; edit other details in SolarNexus."
)


class Customer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    address: str | None = None


class Milestone(BaseModel):
    model_config = ConfigDict(extra="ignore")

    milestone_id: Id
    version: int = Field(ge=0)
    project_id: Id | None = None
    name: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    assignee_user_ids: list[Id]
    start: str | None
    end: str | None
    all_day: bool
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
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown IANA time zone {value!r}") from error
        return value

    @model_validator(mode="after")
    def _times(self) -> Milestone:
        if (self.start is None) != (self.end is None):
            raise ValueError("start and end are both set or both null")
        start, end = self.start, self.end
        if start is None or end is None:
            return self
        pattern, kind = (_DATE, "dates (YYYY-MM-DD)") if self.all_day else (_UTC_TIME, "UTC times (…Z)")
        if not pattern.match(start) or not pattern.match(end):
            raise ValueError(f"{'all-day' if self.all_day else 'timed'} milestones need {kind} for start and end")
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
    version: int = Field(ge=0)


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


def calendar_event(m: Milestone) -> dict:
    """The Cronofy upsert body for a scheduled milestone (ARCHITECTURE §5)."""
    assert m.on_calendar and m.start and m.end
    customer = m.customer or Customer()
    summary = f"{m.name} - {customer.name}" if customer.name else m.name
    lines = []
    if customer.name:
        lines.append(f"Customer: {customer.name}")
    if customer.phone:
        lines.append(f"Phone: {customer.phone}")
    if customer.email:
        lines.append(f"Email: {customer.email}")
    if customer.address:
        lines.append(f"Address: {customer.address}")
    if m.notes:
        lines += ["", m.notes]
    if m.url:
        lines += ["", f"Project: {m.url}"]
    lines += ["", MANAGED_LINE]
    description = "\n".join(lines)
    if len(description) > DESCRIPTION_LIMIT:
        keep = DESCRIPTION_LIMIT - len(MANAGED_LINE) - 3
        description = description[:keep] + "…\n\n" + MANAGED_LINE
    event: dict = {
        "event_id": event_id_for(m.milestone_id),
        "summary": summary[:SUMMARY_LIMIT],
        "description": description,
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
