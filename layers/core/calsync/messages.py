"""SQS message bodies exchanged with the core platform (shared/design/messages.schema.json) and
the service's own internal jobs: models only. Sending them is `calsync.publisher`."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from calsync.models import ConnectionState, iso, utcnow

Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
UtcTime = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")]


class Envelope(BaseModel):
    model_config = ConfigDict(extra="allow")
    message_id: Annotated[str, StringConstraints(min_length=1)]
    occurred_at: UtcTime
    org_id: Id


class UserDeactivated(Envelope):
    type: Literal["user.deactivated"]
    user_id: Id


class DisconnectRequested(Envelope):
    """Internal: the user asked to disconnect (DELETE /v1/calendar/connection)."""

    type: Literal["connection.disconnect_requested"]
    user_id: Id
    # The connection the user asked to disconnect: a replay after a reconnect finds another one and
    # does nothing. (Absent in jobs queued before it existed, and in the reconciler's re-queued ones:
    # those act only on a connection that is still `disconnecting`.)
    connection_id: Id | None = None


UserQueueMessage = Annotated[UserDeactivated | DisconnectRequested, Field(discriminator="type")]


class ConnectionChanged(BaseModel):
    type: Literal["calendar.connection_changed"] = "calendar.connection_changed"
    message_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: str = Field(default_factory=lambda: iso(utcnow()))
    org_id: str
    user_id: str
    state: ConnectionState
    reason: str | None = None


class _CalendarSideChange(BaseModel):
    """What the user did to a SolarNexus event on their calendar (ARCHITECTURE §4)."""

    message_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: str = Field(default_factory=lambda: iso(utcnow()))
    org_id: str
    milestone_id: str
    user_id: str
    based_on_version: int


class MilestoneRescheduledOnCalendar(_CalendarSideChange):
    type: Literal["milestone.rescheduled_on_calendar"] = "milestone.rescheduled_on_calendar"
    start: str
    end: str
    all_day: bool
    timezone: str


class MilestoneRemovedOnCalendar(_CalendarSideChange):
    type: Literal["milestone.removed_on_calendar"] = "milestone.removed_on_calendar"


class Interval(BaseModel):
    """A stretch of time, ISO-8601 UTC at both ends."""

    start: UtcTime
    end: UtcTime


ConflictWhy = Literal["busy_time_gone", "milestone_moved", "unassigned", "milestone_unscheduled", "disconnected"]


class ConflictDetected(BaseModel):
    """The user's own busy time (not ours, not "Show as Free") now covers part of a scheduled milestone
    assigned to them (ARCHITECTURE §4). Sent once per (milestone, user) while the overlap lasts; a changed
    overlap is not a new conflict. Start and end only: nothing else of the user's event."""

    type: Literal["calendar.conflict_detected"] = "calendar.conflict_detected"
    message_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: str = Field(default_factory=lambda: iso(utcnow()))
    org_id: str
    user_id: str
    milestone_id: str
    milestone_version: int = Field(ge=0)
    conflict_id: str = Field(description="stable for this (milestone, user) conflict until it is resolved")
    overlap: Interval = Field(description="the part of the milestone's time the user's busy periods cover "
                                          "(union, clipped to the milestone)")


class ConflictResolved(BaseModel):
    """A conflict sent earlier has ended, and why."""

    type: Literal["calendar.conflict_resolved"] = "calendar.conflict_resolved"
    message_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: str = Field(default_factory=lambda: iso(utcnow()))
    org_id: str
    user_id: str
    milestone_id: str
    conflict_id: str
    why: ConflictWhy
