"""The reconciler (EventBridge schedule): so nobody ever has to disconnect and reconnect, at a Cronofy
cost that lets one application carry tens of thousands of users.

Every connection that needs looking after has a *due time* (`Connection.due_at`, kept in the `by_due`
index on every write): about a day after its last full check, earlier when live work has just
refreshed its access token (a visit then costs no token request of its own), 15 minutes after it got
stuck in `disconnecting` or `syncing`. Each run takes the most overdue users first, so no fixed order
can starve a tail: a visited user goes to the back of the line by its next due time.

A visit of a connected user (`visit`), cadence by need rather than by the clock:
1. one Read Events over Cronofy's window (with deletions) is both the catch-up and the drift check
   (`NotificationProcessor.check`, rules in calsync.drift): a move or delete the user made after our
   last write reaches SolarNexus exactly as a notification would (a lost notification loses nothing);
   then missing events (gone silently, or a tombstone older than our write: the provider lost it),
   moved or retitled ones are written again from the mirror, orphans deleted, never-pushed milestones
   written. The read takes only SolarNexus's events (`only_managed`), or everything, rebuilding the busy
   periods from the user's own events too, when those are due (weekly) or cost nothing more (the last
   read of everything fit on one page);
2. the push channel is listed (one request) unless a notification came through it in the last hour, so a
   channel that is gone (closed at Cronofy, or by mistake) is found and made again at the next daily
   visit, within a day; one that cannot be made again shows as `push_channel_missing` in health;
3. a notification's read is the day's check as well when that costs no more
   (`Connection.check_rides_on_read`): most working days need no visit of their own;
4. tokens are refreshed only by the client, when a request is about to use an expired one.
A healthy quiet user's visit is two requests: the read and the channel listing (one more when its token
has lapsed).

The run's budget is what the shared limiter has left after live work: before each visit it checks the
bucket and keeps a reserve for the queues; it never waits long (the rest come next run). A user 20 minutes
past due (URGENT_AFTER) is no longer put off: the visit waits in line with the reads behind notifications,
behind calendar writes, so a long busy spell cannot push anyone's check past 24 h. A user whose
visit raises (any error) is recorded, retried an hour later (10 minutes when Cronofy did not answer), and
never stops the run. The run reports its backlog (users due and not visited, the oldest due time) as
metrics, with an alarm.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta

from calsync.clock import parse_utc
from calsync.cronofy import CronofyAuthError, CronofyRateLimited, CronofyUnavailable, InvalidGrant, patient
from calsync.models import ONE_PAGE, STUCK_AFTER, Connection, ConnectionState, iso, utcnow
from calsync.notifications import NotificationProcessor, checked
from calsync.observability import logger, metrics
from calsync.ports import ConnectionUpkeep, EventPublisher, RequestCounter, SyncStore, TokenKeeper, UserCalendar

# A notification this recent proves the channel works; otherwise the visit lists it. Visits come at most
# CHECK_EVERY + 1 h apart, so a gone channel is noticed and mended within a day.
CHANNEL_CHECK_EVERY = timedelta(hours=1)
CHANNEL_MISSING = "push_channel_missing"
BUSY_REBUILD_EVERY = timedelta(days=7)
RETRY_FAILED_AFTER = timedelta(hours=1)
# A visit that failed because Cronofy did not answer (5xx or timeouts past the client's retries) is tried
# again sooner: a day's check must not slip past 24 h by an hour for one lost answer.
RETRY_UNAVAILABLE_AFTER = timedelta(minutes=10)
PER_VISIT_ESTIMATE = 3  # requests a visit may need (refresh, read, a write): kept in hand before each
# A user this long past due (due 23 h after the last check: so 23 h 20 min) is overdue enough that the
# visit no longer yields to live work: its requests wait in line with the reads behind notifications
# (behind calendar writes, up to URGENT_MAX_WAIT each) instead of the run giving up while live work keeps
# the limiter busy. The 20,000-user rough run showed why: the four time zones' mornings kept the limiter
# busy for nine hours, the yielding reconciler checked almost nobody then, and 4,957 users went past 24 h.
URGENT_AFTER = timedelta(minutes=20)
URGENT_MAX_WAIT = 10.0
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


class Reconciler:
    def __init__(self, store: SyncStore, tokens: TokenKeeper, upkeep: ConnectionUpkeep, publisher: EventPublisher,
                 requests: RequestCounter, processor: NotificationProcessor, max_requests: int, limiter=None):
        self.store = store
        self.tokens = tokens
        self.upkeep = upkeep
        self.publisher = publisher
        self.requests = requests
        self.processor = processor  # its full check is the visit's read (the same rules as a notification's)
        self.max_requests = max_requests
        self.limiter = limiter

    # ---- the run ----------------------------------------------------------------------------------

    def _room(self, spent: int, deadline: float | None, urgent: bool = False) -> bool:
        """Is there budget for one more visit? The run's own cap, then the shared limiter: live work
        (queues, people) keeps half the burst. A short wait for the bucket to refill is slept (this is
        a scheduled job with time to spend, not queue work); a bucket live work keeps drained ends the run.
        An urgent visit (URGENT_AFTER past due) only needs the cap: it waits in line request by request."""
        if spent + PER_VISIT_ESTIMATE > self.max_requests:
            return False
        if self.limiter is None or urgent:
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
        urgent: set[str] = set()  # (the due index is ordered: these come first)
        done: set[str] = set()
        while True:
            if not queue:
                if explicit:
                    break
                due = [(u, at) for u, at in self.store.due_times(iso(now), DUE_PAGE + len(done)) if u not in done]
                if not due:
                    break
                queue = [u for u, _ in due]
                urgent = {u for u, at in due if at <= iso(now - URGENT_AFTER)}
            if deadline is not None and time.monotonic() > deadline:
                totals["stopped_for_time"] += 1
                break
            user_id = queue[0]
            if not self._room(app.requests_sent - start_count, deadline, urgent=user_id in urgent):
                totals["stopped_for_budget"] += 1
                break
            queue.pop(0)
            done.add(user_id)
            if user_id in urgent:
                totals["urgent"] += 1
            try:
                with patient(URGENT_MAX_WAIT, until=deadline) if user_id in urgent else nullcontext():
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
        for name in ("users", "urgent", "missing", "moved", "orphans", "channels", "backfills_restarted", "errors",
                     "cronofy_requests"):
            metrics.add_metric(name=f"Reconcile_{name}", unit="Count", value=totals.get(name, 0))
        return dict(totals)

    def _failed(self, user_id: str, error: Exception) -> None:
        retry = utcnow() + (RETRY_UNAVAILABLE_AFTER if isinstance(error, CronofyUnavailable) else RETRY_FAILED_AFTER)
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
                # The user's own events come along when the busy periods are due a rebuild, or when the
                # last read of everything fit on one page (then they cost nothing more).
                own = plan.busy or (conn.full_read_pages is not None and conn.full_read_pages <= ONE_PAGE)
                repairs.update(self.processor.check(conn, client, now, own_events=own))
                update.update(checked(now, client, own_events=own))
                repairs["busy_rebuilt"] += int(own)
                if plan.channel:
                    repairs.update(self._channel(conn, client))
                    update["channel_seen_at"] = now
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
            if conn.last_error == CHANNEL_MISSING:
                self.store.update_connection(conn.user_id, _channel_mended)
            return Counter()
        logger.warning("push channel gone: making it again", extra={"user_id": conn.user_id})
        metrics.add_metric(name="PushChannelMissing", unit="Count", value=1)
        try:
            channel = client.create_channel(self.upkeep.channel_callback_url(conn.user_id))
        except (InvalidGrant, CronofyAuthError):
            raise
        except Exception:
            # Shown in health (last_error, stale) until a visit mends it; the visit is retried in an hour.
            self.store.update_connection(conn.user_id, lambda c: c.model_copy(update={
                "last_error": CHANNEL_MISSING, "last_error_at": utcnow()}))
            raise
        self.store.update_connection(conn.user_id, lambda c: _channel_mended(c.model_copy(update={
            "channel_id": channel.channel_id, "updated_at": utcnow()})))
        return Counter(channels=1)


def _channel_mended(conn: Connection) -> Connection:
    if conn.last_error != CHANNEL_MISSING:
        return conn
    return conn.model_copy(update={"last_error": None, "last_error_at": None})
