"""What the sync rules need from the world, as interfaces (ports).

The rules (sync, notifications, reconciler, backfill, busy periods) name these Protocols instead of
the DynamoDB `Store`, the HTTP `CronofyUser` or the `ConnectionService` that holds them all. Why:
- each collaborator says exactly which calls it makes, so a reader (and mypy) sees its reach;
- unit tests plug in an in-memory store and a fake Cronofy (tests/fakes) and run the rules in
  milliseconds, with no moto and no emulator;
- the adapters stay swappable: `calsync.store.Store` over DynamoDB (or the in-memory table), the
  Cronofy client, `ConnectionService` as the token keeper, `Publisher` over SQS. `calsync.wiring`
  is the one place that plugs adapters into ports.
Protocols are structural: the adapters do not inherit from them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel

from calsync.conflicts import Conflict
from calsync.cronofy import BatchItemResult, Channel
from calsync.models import BackfillProgress, Calendar, Connection, ConnectionState, EventRef

# ---- storage (calsync.store.Store), per aggregate -------------------------------------------------


class ConnectionStore(Protocol):
    """Connections: read, optimistic update (ConflictError when another writer got there first), due times."""

    def get_connection(self, user_id: str) -> Connection | None: ...

    def connections(self, user_ids: list[str]) -> dict[str, Connection]: ...

    def save_connection(self, conn: Connection) -> Connection: ...

    def update_connection(self, user_id: str, change: Callable[[Connection], Connection | None],
                          attempts: int = 3) -> Connection | None: ...

    def users_due(self, now: str, limit: int) -> list[str]: ...
    def due_times(self, now: str, limit: int) -> list[tuple[str, str]]: ...

    def due_backlog(self, now: str) -> tuple[int, str | None]: ...


class MilestoneStore(Protocol):
    """The milestone mirror, its by-assignee schedule index and the event refs (what we last wrote)."""

    def put_mirror_if_newer(self, org_id: str, milestone_id: str, version: int, body: str | None) -> bool: ...

    def milestone_partition(self, milestone_id: str) -> tuple[dict | None, dict[str, str], dict[str, EventRef]]: ...

    def partitions_for_user(
        self, milestone_ids: list[str], user_id: str
    ) -> dict[str, tuple[dict | None, dict[str, str], dict[str, EventRef]]]: ...

    def mirrors(self, milestone_ids: list[str]) -> dict[str, dict]: ...

    def set_schedule_index(self, milestone_id: str, add: dict[str, str], remove: list[str]) -> None: ...

    def note_assignment_span(self, user_ids: list[str], span: timedelta) -> None: ...

    def scheduled_for_user(self, user_id: str, since: str) -> list[str]: ...

    def get_ref(self, milestone_id: str, user_id: str) -> EventRef | None: ...

    def put_ref(self, ref: EventRef) -> bool: ...

    def put_refs(self, refs: list[EventRef]) -> None: ...

    def delete_ref(self, milestone_id: str, user_id: str, version: int | None = None) -> bool: ...

    def refs_of_user(self, user_id: str) -> list[EventRef]: ...


class BackfillStore(Protocol):
    """A backfill run's progress and its chunks of milestone ids."""

    def get_backfill(self, user_id: str) -> dict | None: ...

    def put_backfill(self, user_id: str, run_id: str, progress: BackfillProgress, error: str | None = None,
                     started_at: float | None = None) -> None: ...

    def add_backfill_done(self, user_id: str, run_id: str, count: int) -> None: ...

    def put_chunks(self, run_id: str, chunks: list[list[str]], expires_at: int) -> None: ...

    def get_chunk(self, run_id: str, n: int) -> list[str]: ...


class SyncStore(ConnectionStore, MilestoneStore, Protocol):
    """What the sync engine, the notification processor and the reconciler read and write."""


class BackfillStepsStore(SyncStore, BackfillStore, Protocol):
    """What the backfill steps read and write."""


class BusyWeeks(Protocol):
    """A user's busy periods, one item per week (calsync.store.BusyStore)."""

    def weeks_of_user(self, user_id: str) -> dict[str, dict]: ...

    def write_weeks(self, user_id: str, org_id: str, weeks: dict[str, dict[str, str]], updated_at: str,
                    expires_at: dict[str, int], previous: dict[str, dict] | None = None,
                    unsure: set[str] | None = None) -> None: ...

    def touch(self, user_id: str, org_id: str, updated_at: str) -> None: ...

    def get_many(self, user_ids: list[str], weeks: list[str]) -> dict[str, dict]: ...


class ConflictStore(Protocol):
    """Open conflicts (calsync.repositories.conflicts) and what judging them reads of milestones and connections."""

    def conflicts_of_user(self, org_id: str, user_id: str) -> dict[str, Conflict]: ...

    def conflicts_of_milestone(self, org_id: str, milestone_id: str, user_ids: list[str]) -> dict[str, Conflict]: ...

    def add_conflict(self, c: Conflict) -> bool: ...

    def replace_conflict(self, c: Conflict, state: str) -> bool: ...

    def delete_conflict(self, c: Conflict) -> bool: ...

    def milestone_partition(self, milestone_id: str) -> tuple[dict | None, dict[str, str], dict[str, EventRef]]: ...

    def mirrors(self, milestone_ids: list[str]) -> dict[str, dict]: ...

    def assigned_milestone_ids(self, user_id: str, start_from: str, start_before: str) -> list[str]: ...

    def longest_assignments(self, user_ids: list[str]) -> dict[str, timedelta]: ...

    def connections(self, user_ids: list[str]) -> dict[str, Connection]: ...


# ---- Cronofy ------------------------------------------------------------------------------------


class EventReader(Protocol):
    """Read Events, all pages (what the busy periods need of a user's calendar)."""

    def read_events(self, **params: Any) -> Iterable[dict[str, Any]]: ...


class UserCalendar(EventReader, Protocol):
    """The calls the rules make with one user's tokens (calsync.cronofy.CronofyUser). Errors are the
    CronofyError family: InvalidGrant/CronofyAuthError mean the user must reconnect."""

    pages_read: int  # pages the latest Read Events took (once read through)

    def batch(self, entries: list[dict[str, Any]]) -> list[BatchItemResult]: ...

    def bulk_delete(self, *, delete_all: bool = False, calendar_ids: list[str] | None = None) -> None: ...

    def list_channels(self) -> list[Channel]: ...

    def create_channel(self, callback_url: str, filters: dict[str, Any] | None = None) -> Channel: ...

    def userinfo(self) -> dict[str, Any]: ...

    def calendars(self) -> list[Calendar]: ...


class TokenKeeper(Protocol):
    """Hands out a user's Cronofy client and takes the connection down when its grant is gone
    (calsync.connections.ConnectionService)."""

    def user_client(self, conn: Connection) -> UserCalendar: ...

    def mark_needs_reauth(self, conn: Connection, reason: str) -> Connection: ...

    def mark_calendar_unwritable(self, conn: Connection, reason: str) -> Connection: ...


class ConnectionUpkeep(Protocol):
    """The connection chores a reconciler visit may do (calsync.connections.ConnectionService)."""

    def on_calendar_selected(self, conn: Connection, previous_calendar_id: str | None) -> Connection: ...

    def refresh_timezone(self, conn: Connection, client: Any, now: datetime | None = None) -> None: ...

    def channel_callback_url(self, user_id: str) -> str: ...


class RequestCounter(Protocol):
    """How many Cronofy requests this container has sent (calsync.cronofy.CronofyApp): a run's budget."""

    requests_sent: int


# ---- queues -------------------------------------------------------------------------------------


class EventPublisher(Protocol):
    """Messages to the core platform and to the cleanup queue (calsync.publisher.Publisher)."""

    def connection_changed(self, org_id: str, user_id: str, state: ConnectionState, reason: str | None) -> None: ...

    def calendar_change(self, message: BaseModel) -> None: ...

    def request_disconnect(self, org_id: str, user_id: str, connection_id: str | None = None) -> None: ...
