"""Crew availability for the scheduler: `POST /v1/orgs/{org_id}/availability` (ARCHITECTURE §2, issue 13).

The first slots when all of a crew (or any N of them) are free, from DynamoDB alone (no Cronofy
request): each member's stored busy blocks (their own events; SolarNexus events are not in them)
plus their SolarNexus assignments from the milestone mirror, working hours in each member's own
time zone. The slot finding itself is `calsync.slots` (pure). The search starts at `from` or now,
whichever is later: no slot in the past is offered (busy periods are not kept for it anyway).
A member whose stored busy periods end before `to` (they are kept 60 days ahead of their last
rebuild, calsync.busy.covered_until) is `stale`: the days past that look free but are unknown.

Assignments still running at `from` are found through the `by_assignee` index, which is by start:
each member's query starts their longest assignment before `from` (the store keeps, per user, the
longest milestone they were ever scheduled for when it is over 7 days; 7 days otherwise). Its cost is
one more BatchGetItem per call and a conditional write per assignee only for milestones over 7 days.
A sort key on the end (or the end on the index item) would need a new GSI or an index change for every
reader of `by_assignee`: not worth it for a lookback that is days for nearly everyone. The record only
grows (a 40-day milestone since shortened keeps that member's lookback at 40 days: more index keys
read, never a missed assignment).

DynamoDB requests per call, for n members (at most 50) and m milestones assigned to them that start
in [from - their longest assignment, to): 1 BatchGetItem of connections + ceil(n x (w + 1) / 100)
BatchGetItems of busy periods (w: the weeks from - 1 day .. to + 1 day touches; 1 request for 10
members x 14 days) + ceil(n / 100) BatchGetItems of the members' longest assignments + n queries of the
`by_assignee` index + ceil(m / 100) BatchGetItems of mirrors.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    field_validator,
    model_validator,
)

from calsync import freshness, slots
from calsync.busy import Busy, covered_until
from calsync.caller import Caller
from calsync.clock import parse_utc, wire_time
from calsync.messages import Id
from calsync.models import iso, utcnow
from calsync.store import Store

MAX_MEMBERS = 50
MAX_SPAN_DAYS = 62
_CLOCK = r"^([01]\d|2[0-3]):[0-5]\d$"


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown IANA time zone {name!r}") from error
    return name


# ISO strings with a zone, 2000-2100 (calsync.clock.wire_time): not epoch numbers, nor year 9999.
IsoDatetime = Annotated[AwareDatetime, BeforeValidator(wire_time)]
# Optional fields whose JSON null means "use the default", like a left-out field (as ignore_milestone_id).
NULL_IS_DEFAULT = ("working_hours", "timezone", "buffer_minutes", "slot_interval_minutes", "max_results")


def _or_null(schema: dict) -> None:
    """Documents a field whose null is taken as its default: `anyOf: [its schema, null]`."""
    kept = {k: schema.pop(k) for k in list(schema) if k not in ("default", "description", "title")}
    schema["anyOf"] = [kept, {"type": "null"}]


class WorkingHoursIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weekdays: list[Annotated[StrictInt, Field(ge=1, le=7)]] = Field(
        default=[1, 2, 3, 4, 5], min_length=1, max_length=7, description="ISO weekdays, 1 = Monday")
    start: str = Field(default="08:00", pattern=_CLOCK, description="local time HH:MM")
    end: str = Field(default="17:00", pattern=_CLOCK, description="local time HH:MM, after start")

    @model_validator(mode="after")
    def _order(self) -> WorkingHoursIn:
        if self.end <= self.start:
            raise ValueError("working hours must end after they start")
        return self

    def rule(self) -> slots.WorkingHours:
        return slots.WorkingHours(frozenset(self.weekdays), time.fromisoformat(self.start),
                                  time.fromisoformat(self.end))


class AvailabilityRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    user_ids: list[Id] = Field(min_length=1, max_length=MAX_MEMBERS, description="the crew")
    # Strict integers and ISO strings: true is not 1, "2" is not 2 and an epoch number is not a time.
    required: Literal["all"] | Annotated[StrictInt, Field(ge=1)] = Field(
        default="all", description='"all", or N: slots where any N of the crew are free')
    duration_minutes: StrictInt = Field(ge=5, le=24 * 60)
    start: IsoDatetime = Field(alias="from", description="ISO-8601 UTC")
    end: IsoDatetime = Field(alias="to", description=f"ISO-8601 UTC, at most {MAX_SPAN_DAYS} days after from")
    working_hours: WorkingHoursIn = Field(default_factory=WorkingHoursIn, json_schema_extra=_or_null,
                                          description="the org's default, in each member's own time zone; "
                                                      "null: the default")
    member_working_hours: dict[Id, WorkingHoursIn] = Field(default_factory=dict, max_length=MAX_MEMBERS,
                                                           description="per member, instead of the default")
    timezone: Annotated[str, Field(max_length=64)] = Field(
        default="UTC", json_schema_extra=_or_null,
        description="IANA zone for members whose calendar account's zone is not known; null: UTC")
    buffer_minutes: StrictInt = Field(default=0, ge=0, le=12 * 60, json_schema_extra=_or_null,
                                      description="kept free before and after busy times; null: 0")
    slot_interval_minutes: StrictInt = Field(
        default=30, ge=5, le=24 * 60, json_schema_extra=_or_null,
        description="candidate starts are each member's working-hours start plus whole intervals (1440: once a day); "
                    "null: 30")
    max_results: StrictInt = Field(default=10, ge=1, le=100, json_schema_extra=_or_null, description="null: 10")

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_defaults(cls, data: object) -> object:
        """A JSON null for an optional field is the same as leaving it out."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (v is None and k in NULL_IS_DEFAULT)}
        return data
    ignore_milestone_id: Id | None = Field(default=None, description="the milestone being rescheduled")

    @field_validator("user_ids")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("user_ids must be unique")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _zone(value)

    @model_validator(mode="after")
    def _consistent(self) -> AvailabilityRequest:
        if self.end <= self.start:
            raise ValueError("to must be after from")
        if self.end - self.start > timedelta(days=MAX_SPAN_DAYS):
            raise ValueError(f"from .. to spans at most {MAX_SPAN_DAYS} days")
        if self.end - self.start < timedelta(minutes=self.duration_minutes):
            raise ValueError("from .. to is shorter than duration_minutes")
        if isinstance(self.required, int) and self.required > len(self.user_ids):
            raise ValueError("required is more than the number of user_ids")
        unknown = set(self.member_working_hours) - set(self.user_ids)
        if unknown:
            raise ValueError(f"member_working_hours names users not in user_ids: {sorted(unknown)}")
        return self

    def query(self, now: datetime) -> slots.SlotQuery:
        """The search, from `now` when `from` is already past: a slot that has begun cannot be booked,
        and busy periods are not kept for the past (calsync.busy keeps a day back), so it would look free."""
        return slots.SlotQuery(
            start=max(self.start, now).astimezone(UTC), end=self.end.astimezone(UTC),
            duration=timedelta(minutes=self.duration_minutes),
            required=len(self.user_ids) if self.required == "all" else self.required,
            buffer=timedelta(minutes=self.buffer_minutes), interval=timedelta(minutes=self.slot_interval_minutes),
            max_results=self.max_results, ignore_milestone_id=self.ignore_milestone_id)


def assignment_of(mirror: dict, user_id: str, org_id: str) -> slots.Assignment | None:
    """The busy period a mirrored milestone gives its assignee, if it is scheduled for them in this org."""
    if mirror.get("deleted") or not mirror.get("body") or mirror.get("org_id") != org_id:
        return None
    m = json.loads(mirror["body"])
    if m.get("status") != "scheduled" or not m.get("start") or user_id not in m.get("assignee_user_ids", ()):
        return None
    if not m.get("all_day"):
        return slots.Assignment(m["milestone_id"], parse_utc(m["start"]), parse_utc(m["end"]))
    start, end = slots.all_day_period(date.fromisoformat(m["start"]), date.fromisoformat(m["end"]),
                                      ZoneInfo(m["timezone"]))
    return slots.Assignment(m["milestone_id"], start, end)


class Availability:
    def __init__(self, store: Store, busy: Busy):
        self.store = store
        self.busy = busy

    def find(self, caller: Caller, org_id: str, request: AvailabilityRequest, now: datetime | None = None) -> dict:
        caller.require_org(org_id)
        now = now or utcnow()
        query = request.query(now)
        user_ids = request.user_ids
        connections = {u: c for u, c in self.store.connections(user_ids).items() if c.org_id == org_id}
        default_zone = ZoneInfo(request.timezone)
        zones = {u: freshness.user_zone(connections.get(u), default_zone) for u in user_ids}
        busy = {u: b for u, b in self.busy.periods(user_ids, query.start - query.buffer, query.end + query.buffer,
                                                   zones).items() if b.org_id == org_id}
        lookback = self.store.longest_assignments(user_ids)
        until = iso(query.end + query.buffer)
        assigned = {u: self.store.assigned_milestone_ids(u, iso(query.start - query.buffer - lookback[u]), until)
                    for u in user_ids}
        mirrors = self.store.mirrors([m for ids in assigned.values() for m in ids])
        stale_after = freshness.stale_after()
        members, statuses = [], {}
        for user_id in user_ids:
            conn = connections.get(user_id)
            stored = busy.get(user_id)
            assignments = [a for a in (assignment_of(mirrors[m], user_id, org_id)
                                       for m in assigned[user_id] if m in mirrors) if a is not None]
            hours = request.member_working_hours.get(user_id, request.working_hours)
            members.append(slots.Member(user_id, zones[user_id], hours.rule(),
                                        busy=stored.blocks if stored else [], assignments=assignments))
            covered = query.end + query.buffer <= covered_until(conn, now)
            statuses[user_id] = freshness.member_status(conn, stored, now, stale_after, default_zone, covered)
        found = slots.find_slots(members, query)
        return {
            "slots": [{"start": iso(s.start), "end": iso(s.end), "user_ids": list(s.user_ids)} for s in found],
            "members": statuses,
        }
