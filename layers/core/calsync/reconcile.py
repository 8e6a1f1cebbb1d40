"""The reconciler (EventBridge schedule): so nobody ever has to disconnect and reconnect, at a Cronofy
cost that lets one application carry tens of thousands of users.

Every connection that needs looking after has a *due time* (`Connection.due_at`, kept in the `by_due`
index on every write): about a day after its last full check, earlier when live work has just
refreshed its access token (a visit then costs no token request of its own), 15 minutes after it got
stuck in `disconnecting` or `syncing`. Each run takes the most overdue users first, so no fixed order
can starve a tail: a visited user goes to the back of the line by its next due time.

A visit of a connected user (`visit`), cadence by need rather than by the clock:
1. one Read Events of the SolarNexus events on the calendar (`only_managed`, with deletions, over
   Cronofy's window) is both the catch-up and the drift check: a move or delete the user made after our
   last write reaches SolarNexus exactly as a notification would (a lost notification loses nothing);
   then missing events (gone silently, or a tombstone older than our write: the provider lost it),
   moved or retitled ones are written again from the mirror, orphans deleted, never-pushed milestones
   written;
2. the push channel is listed only when no notification has come through it for a week;
3. busy periods are rebuilt from the user's own events weekly (they are otherwise kept from the
   notifications' reads);
4. tokens are refreshed only by the client, when a request is about to use an expired one.
A healthy user's visit is one request (two when its token has lapsed).

The run's budget is what the shared limiter has left after live work: before each visit it checks the
bucket and keeps a reserve for the queues; it never waits long (the rest come next run). A user whose
visit raises (any error) is recorded, retried an hour later, and never stops the run. The run reports
its backlog (users due and not visited, the oldest due time) as metrics, with an alarm.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from calsync.busy import Busy
from calsync.clock import parse_utc
from calsync.cronofy import BATCH_LIMIT, CronofyAuthError, CronofyRateLimited, InvalidGrant
from calsync.cronofy_event import CronofyEvent, delete_entry, events_of
from calsync.models import STUCK_AFTER, Connection, ConnectionState, EventRef, iso, utcnow
from calsync.notifications import NotificationProcessor, changed_after_our_write
from calsync.observability import logger, metrics
from calsync.ports import ConnectionUpkeep, EventPublisher, RequestCounter, SyncStore, TokenKeeper, UserCalendar
from calsync.sync import BACKFILL_DAYS, SyncEngine

CHANNEL_CHECK_EVERY = timedelta(days=7)
BUSY_REBUILD_EVERY = timedelta(days=7)
RETRY_FAILED_AFTER = timedelta(hours=1)
READ_DAYS_AHEAD = 201  # Cronofy's sync window: it holds nothing further ahead
PER_VISIT_ESTIMATE = 3  # requests a visit may need (refresh, read, a write): kept in hand before each
DUE_PAGE = 25
MAX_WAITS = 10
MAX_WAIT_SECONDS = 2.0


@dataclass(frozen=True)
class VisitPlan:
    """What a visit does (pure: decided from the connection and the time)."""

    requeue_cleanup: bool = False
    restart_backfill: bool = False
    check: bool = False
    channel: bool = False
    busy: bool = False


def plan_visit(conn: Connection, now: datetime) -> VisitPlan:
    if conn.state == ConnectionState.DISCONNECTING:
        return VisitPlan(requeue_cleanup=now - conn.updated_at >= STUCK_AFTER)
    if conn.state == ConnectionState.SYNCING:
        return VisitPlan(restart_backfill=now - conn.updated_at >= STUCK_AFTER)
    if conn.state != ConnectionState.CONNECTED or not conn.calendar_id:
        return VisitPlan()
    channel_seen = conn.channel_seen_at or conn.connected_at
    busy_due = conn.busy_rebuilt_at is None or now - conn.busy_rebuilt_at >= BUSY_REBUILD_EVERY
    return VisitPlan(check=True, channel=now - channel_seen >= CHANNEL_CHECK_EVERY, busy=busy_due)


# Cronofy answers writes with 202 and applies them afterwards: an event written moments ago can
# still be missing or show its previous times. Refs written within this long are not judged.
RECENT_WRITE = timedelta(minutes=2)


def _in_flight(ref: EventRef) -> bool:
    return ref.updated_at is not None and timedelta(0) <= utcnow() - ref.updated_at < RECENT_WRITE


def in_window(ref: EventRef, first_day: str, end_day: str) -> bool:
    """Does the event of this ref start inside the Read Events window [first_day, end_day)?"""
    return first_day <= ref.start[:10] < end_day


@dataclass
class Drift:
    """What one read of a user's SolarNexus events shows against the refs (pure: `find_drift`)."""

    rewrite: set[str] = field(default_factory=set)  # milestone ids to write again from the mirror
    orphans: list[tuple[str, str]] = field(default_factory=list)  # (calendar_id, event_id) to delete
    repairs: Counter = field(default_factory=Counter)


def _judge_tombstone(drift: Drift, event: CronofyEvent, ref: EventRef | None, seen: set[str]) -> None:
    """A deleted event of ours: lost (deleted before our last write, not by the user) means rewrite."""
    if ref is None or ref.calendar_id != event.calendar_id:
        return
    seen.add(ref.event_id)
    if ref.removed_by_user_version is None and not changed_after_our_write(event, ref) and not _in_flight(ref):
        drift.rewrite.add(ref.milestone_id)  # deleted before our last write: lost, not the user's
        drift.repairs["missing"] += 1


def _judge_live(drift: Drift, event: CronofyEvent, ref: EventRef) -> None:
    """A live event of ours: moved or retitled behind our back means rewrite."""
    if _in_flight(ref):
        return  # Cronofy may not have applied our latest write yet: not drift
    if event.times() not in {(ref.start, ref.end), (ref.user_moved_start, ref.user_moved_end)}:
        drift.rewrite.add(ref.milestone_id)
        drift.repairs["moved"] += 1
    elif ref.summary is not None and event.summary != ref.summary:
        drift.rewrite.add(ref.milestone_id)
        drift.repairs["content"] += 1


def find_drift(events: list[CronofyEvent], refs: dict[str, EventRef], calendar_id: str | None, first_day: str,
               end_day: str) -> Drift:
    """Compare our events on the calendar (Read Events over [first_day, end_day)) with the refs, keyed
    by event id: what to write again, what to delete."""
    drift = Drift()
    seen: set[str] = set()
    for event in events:
        assert event.event_id is not None
        ref = refs.get(event.event_id)
        if event.deleted:
            _judge_tombstone(drift, event, ref, seen)
        elif ref is None or ref.calendar_id != event.calendar_id or ref.removed_by_user_version is not None:
            drift.orphans.append((event.calendar_id or "", event.event_id))
        else:
            seen.add(event.event_id)
            _judge_live(drift, event, ref)
    for event_id, ref in refs.items():
        if (event_id not in seen and ref.removed_by_user_version is None and ref.calendar_id == calendar_id
                and in_window(ref, first_day, end_day) and not _in_flight(ref)):
            drift.rewrite.add(ref.milestone_id)
            drift.repairs["missing"] += 1
    return drift


class Reconciler:
    def __init__(self, store: SyncStore, tokens: TokenKeeper, upkeep: ConnectionUpkeep, publisher: EventPublisher,
                 requests: RequestCounter, engine: SyncEngine, processor: NotificationProcessor, busy: Busy,
                 max_requests: int, limiter=None):
        self.store = store
        self.tokens = tokens
        self.upkeep = upkeep
        self.publisher = publisher
        self.requests = requests
        self.engine = engine
        self.processor = processor
        self.busy = busy
        self.max_requests = max_requests
        self.limiter = limiter

    # ---- the run ----------------------------------------------------------------------------------

    def _room(self, spent: int, deadline: float | None) -> bool:
        """Is there budget for one more visit? The run's own cap, then the shared limiter: live work
        (queues, people) keeps half the burst. A short wait for the bucket to refill is slept (this is
        a scheduled job with time to spend, not queue work); a bucket live work keeps drained ends the run."""
        if spent + PER_VISIT_ESTIMATE > self.max_requests:
            return False
        if self.limiter is None:
            return True
        need = min(self.limiter.burst, self.limiter.burst / 2 + PER_VISIT_ESTIMATE)  # (a tiny burst: all of it)
        for _ in range(MAX_WAITS):
            have = self.limiter.headroom()
            if have >= need:
                return True
            wait = min(MAX_WAIT_SECONDS, (need - have) / self.limiter.rate + 0.05)
            if deadline is not None and time.monotonic() + wait > deadline:
                return False
            time.sleep(wait)
            if self.limiter.headroom() <= have:
                return False  # live work took what refilled: it comes first
        return False

    def run(self, user_ids: list[str] | None = None, deadline: float | None = None) -> dict:
        """Visit these users, or (None) the due ones, most overdue first, while budget and time last."""
        app = self.requests
        start_count = app.requests_sent
        totals: Counter = Counter()
        now = utcnow()
        explicit = user_ids is not None
        queue = list(user_ids or [])
        done: set[str] = set()
        while True:
            if not queue:
                if explicit:
                    break
                queue = [u for u in self.store.users_due(iso(now), DUE_PAGE + len(done)) if u not in done]
                if not queue:
                    break
            if deadline is not None and time.monotonic() > deadline:
                totals["stopped_for_time"] += 1
                break
            if not self._room(app.requests_sent - start_count, deadline):
                totals["stopped_for_budget"] += 1
                break
            user_id = queue.pop(0)
            done.add(user_id)
            try:
                repairs = self.visit(user_id, now)
            except CronofyRateLimited:
                totals["stopped_for_budget"] += 1
                break  # this user stays due: first in line next run
            except Exception as error:  # noqa: BLE001 - one user's bad day never stops the others
                logger.exception("reconcile failed for user", extra={"user_id": user_id})
                self._failed(user_id, error)
                repairs = Counter(errors=1)
            totals.update(repairs)
            totals["users"] += 1
        totals["cronofy_requests"] = app.requests_sent - start_count
        if not explicit:
            backlog, oldest = self.store.due_backlog(iso(utcnow()))
            totals["backlog"] = backlog
            overdue = (utcnow() - parse_utc(oldest)) if oldest else timedelta()
            totals["oldest_overdue_minutes"] = int(overdue.total_seconds() // 60)
            metrics.add_metric(name="Reconcile_Backlog", unit="Count", value=backlog)
            metrics.add_metric(name="Reconcile_OldestOverdueMinutes", unit="Count",
                               value=totals["oldest_overdue_minutes"])
        for name in ("users", "missing", "moved", "orphans", "channels", "backfills_restarted", "errors",
                     "cronofy_requests"):
            metrics.add_metric(name=f"Reconcile_{name}", unit="Count", value=totals.get(name, 0))
        return dict(totals)

    def _failed(self, user_id: str, error: Exception) -> None:
        retry = utcnow() + RETRY_FAILED_AFTER
        try:
            self.store.update_connection(user_id, lambda c: c.model_copy(update={
                "reconcile_retry_at": retry, "visit_requested_at": None,
                "reconcile_error": f"{type(error).__name__}: {str(error)[:200]}"}))
        except Exception:  # noqa: BLE001 - the store itself failing: the user is tried again next run
            logger.exception("could not record a failed visit", extra={"user_id": user_id})

    # ---- one user ---------------------------------------------------------------------------------

    def visit(self, user_id: str, now: datetime | None = None) -> Counter:
        now = now or utcnow()
        repairs: Counter = Counter()
        conn = self.store.get_connection(user_id)
        if conn is None:
            return repairs
        plan = plan_visit(conn, now)
        if plan.requeue_cleanup:
            self.publisher.request_disconnect(conn.org_id, conn.user_id, conn.connection_id)  # a lost job
            repairs["cleanups_requeued"] += 1
        if plan.restart_backfill:
            self.upkeep.on_calendar_selected(conn, None)
            repairs["backfills_restarted"] += 1
        update: dict = {"last_reconciled_at": now, "visit_requested_at": None, "reconcile_retry_at": None,
                        "reconcile_error": None}
        if plan.check:
            try:
                client = self.tokens.user_client(conn)
                self.upkeep.refresh_timezone(conn, client, now)  # weekly: the account's zone may change
                repairs.update(self._check(conn, client, now))
                update["last_checked_at"] = now
                if plan.channel:
                    repairs.update(self._channel(conn, client))
                    update["channel_seen_at"] = now
                if plan.busy:
                    self.busy.rebuild(conn, client, now)
                    repairs["busy_rebuilt"] += 1
                    update["busy_rebuilt_at"] = now
            except (InvalidGrant, CronofyAuthError):
                self.tokens.mark_needs_reauth(conn, "authorization_revoked")
                repairs["needs_reauth"] += 1
                return repairs
        elif not (plan.requeue_cleanup or plan.restart_backfill):
            update.pop("last_reconciled_at")
        if plan.requeue_cleanup or plan.restart_backfill:
            update["reconcile_retry_at"] = now + STUCK_AFTER  # give the job time before asking again
        self.store.update_connection(user_id, lambda c: c.model_copy(update=update))
        logger.info("reconciled", extra={"user_id": user_id, "repairs": dict(repairs)})
        return repairs

    def _channel(self, conn: Connection, client: UserCalendar) -> Counter:
        open_ids = {c.channel_id for c in client.list_channels()}
        if conn.channel_id in open_ids:
            return Counter()
        channel = client.create_channel(self.upkeep.channel_callback_url(conn.user_id))
        self.store.update_connection(conn.user_id, lambda c: c.model_copy(update={
            "channel_id": channel.channel_id, "updated_at": utcnow()}))
        return Counter(channels=1)

    def _check(self, conn: Connection, client: UserCalendar, now: datetime) -> Counter:
        """One read of our events: the catch-up of missed notifications, then drift repair."""
        first_day = (now - timedelta(days=BACKFILL_DAYS)).date().isoformat()
        end_day = (now + timedelta(days=READ_DAYS_AHEAD)).date().isoformat()
        events = [e for e in events_of(client.read_events(include_managed=True, only_managed=True,
                                                          include_deleted=True, **{"from": first_day, "to": end_day}))
                  if e.solarnexus]
        repairs: Counter = Counter()
        repairs["reported"] += self.processor.read_and_report(conn, events, catching_up=True)
        refs = {r.event_id: r for r in self.store.refs_of_user(conn.user_id)}  # after the catch-up's records
        drift = find_drift(events, refs, conn.calendar_id, first_day, end_day)
        repairs.update(drift.repairs)
        since = iso(now - timedelta(days=BACKFILL_DAYS))
        never_pushed = set(self.store.scheduled_for_user(conn.user_id, since)) - {r.milestone_id for r in refs.values()}
        if drift.rewrite:
            self._forget(conn.user_id, drift.rewrite)
        if drift.rewrite or never_pushed:
            self.engine.sync(sorted(drift.rewrite | never_pushed), only_user=conn.user_id)
        repairs["never_pushed"] += len(never_pushed)
        for i in range(0, len(drift.orphans), BATCH_LIMIT):
            client.batch([delete_entry(cal, eid) for cal, eid in drift.orphans[i:i + BATCH_LIMIT]])
        repairs["orphans"] += len(drift.orphans)
        return repairs

    def _forget(self, user_id: str, milestone_ids: set[str]) -> None:
        """Drop the refs of drifted events so the sync writes them again from the mirror."""
        for mid in milestone_ids:
            ref = self.store.get_ref(mid, user_id)
            if ref is not None:
                self.store.put_ref(ref.model_copy(update={"content_hash": "drifted"}))
