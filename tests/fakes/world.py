"""The rules wired to fakes, as calsync.wiring wires them to AWS and Cronofy: an in-memory store, a
fake Cronofy, a token keeper and a publisher that remember what they were asked."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel

from calsync.backfill import BackfillSteps
from calsync.busy import Busy
from calsync.conflict_watch import ConflictWatch
from calsync.milestones import Milestone
from calsync.models import Connection, ConnectionState, utcnow
from calsync.notifications import NotificationProcessor
from calsync.reconcile import Reconciler
from calsync.store import Store
from calsync.sync import SyncEngine
from tests.fakes.cronofy import FakeCronofy, FakeUserCalendar
from tests.fakes.store import memory_busy_store, memory_store, memory_table

ORG = "org_1"


@dataclass
class RecordingPublisher:
    """calsync.ports.EventPublisher, remembering every message."""

    sent: list = field(default_factory=list)

    def connection_changed(self, org_id: str, user_id: str, state: ConnectionState, reason: str | None) -> None:
        self.sent.append(("connection_changed", org_id, user_id, state, reason))

    def calendar_change(self, message: BaseModel) -> None:
        self.sent.append(message)

    def request_disconnect(self, org_id: str, user_id: str, connection_id: str | None = None) -> None:
        self.sent.append(("request_disconnect", org_id, user_id, connection_id))

    def changes(self, kind: str) -> list:
        return [m for m in self.sent if getattr(m, "type", None) == kind]


class FakeTokens:
    """calsync.ports.TokenKeeper and ConnectionUpkeep over the fake Cronofy."""

    def __init__(self, store: Store, cronofy: FakeCronofy):
        self.store = store
        self.cronofy = cronofy
        self.reauth: list[tuple[str, str]] = []
        self.backfills: list[str] = []

    def user_client(self, conn: Connection) -> FakeUserCalendar:
        return self.cronofy.client(conn.user_id)

    def mark_needs_reauth(self, conn: Connection, reason: str) -> Connection:
        return self._mark(conn, ConnectionState.NEEDS_REAUTH, reason)

    def mark_calendar_unwritable(self, conn: Connection, reason: str) -> Connection:
        return self._mark(conn, ConnectionState.PENDING_CALENDAR, reason)

    def _mark(self, conn: Connection, state: ConnectionState, reason: str) -> Connection:
        self.reauth.append((conn.user_id, reason))
        updated = self.store.update_connection(conn.user_id, lambda c: c.model_copy(update={
            "state": state, "last_error": reason}))
        return updated or conn

    def on_calendar_selected(self, conn: Connection, previous_calendar_id: str | None) -> Connection:
        self.backfills.append(conn.user_id)
        return conn

    def refresh_timezone(self, conn: Connection, client, now: datetime | None = None) -> None:
        return None

    def channel_callback_url(self, user_id: str) -> str:
        return f"https://api.example/v1/webhooks/cronofy/{user_id}"


class World:
    def __init__(self) -> None:
        db = memory_table()
        self.store = memory_store(db)
        self.cronofy = FakeCronofy()
        self.tokens = FakeTokens(self.store, self.cronofy)
        self.publisher = RecordingPublisher()
        self.busy = Busy(memory_busy_store(db), self.store)
        self.engine = SyncEngine(self.store, self.tokens)
        self.conflicts = ConflictWatch(self.store, self.busy, self.publisher)
        self.processor = NotificationProcessor(self.store, self.tokens, self.publisher, self.busy, self.engine,
                                               conflicts=self.conflicts)
        self.reconciler = Reconciler(self.store, self.tokens, self.tokens, self.publisher, self.cronofy,
                                     self.processor, max_requests=1000)
        self.backfill = BackfillSteps(self.store, self.engine, self.tokens, self.publisher, self.busy,
                                      conflicts=self.conflicts)

    def connect(self, user_id: str, calendar_id: str = "cal_1", org_id: str = ORG, **fields) -> Connection:
        """A connected user (calendar chosen, backfill done) with a channel."""
        self.cronofy.account(user_id, calendar_id)
        now = utcnow()
        conn = Connection.model_validate({
            "user_id": user_id, "org_id": org_id, "state": ConnectionState.CONNECTED, "provider": "google",
            "cronofy_sub": f"acc_{user_id}", "calendar_id": calendar_id, "channel_id": f"chn_{user_id}",
            "connected_at": now - timedelta(days=2), "updated_at": now - timedelta(days=1)} | fields)
        self.store.create_connection(conn, b"sealed", set())
        return conn

    def publish(self, m: Milestone, org_id: str = ORG) -> bool:
        """What the milestone push does with one message: advance the mirror, then sync."""
        newer = self.store.put_mirror_if_newer(org_id, m.milestone_id, m.version, m.model_dump_json())
        self.conflicts.milestones_changed([m.milestone_id])
        self.engine.sync([m.milestone_id])
        return newer

    def delete(self, milestone_id: str, version: int, org_id: str = ORG) -> None:
        self.store.put_mirror_if_newer(org_id, milestone_id, version, None)
        self.conflicts.milestones_changed([milestone_id])
        self.engine.sync([milestone_id])

    def notify(self, user_id: str) -> dict:
        """Deliver the change notification of the user's calendar changes since the previous one."""
        conn = self.store.get_connection(user_id)
        assert conn is not None and conn.channel_id is not None
        return self.processor.process(self.cronofy.notification(user_id, conn.channel_id))


def milestone(milestone_id: str = "m_1", version: int = 1, assignees: tuple[str, ...] = ("u_1",),
              start: datetime | None = None, hours: int = 2, **fields) -> Milestone:
    start = start or (utcnow() + timedelta(days=3)).replace(minute=0, second=0)
    body = {"milestone_id": milestone_id, "version": version, "name": f"Install {milestone_id}",
            "assignee_user_ids": list(assignees), "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": (start + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ"), "all_day": False,
            "timezone": "America/Denver", "status": "scheduled"}
    return Milestone.model_validate(body | fields)
