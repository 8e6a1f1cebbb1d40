"""The reconciler (EventBridge schedule): so nobody ever has to disconnect and reconnect.

For each connected user of this run's slot (users are spread over RECONCILE_SLOTS; a 5-minute
schedule visits everyone hourly):
1. catch up on missed notifications: process changes since the last visit exactly as a `change`
   notification would (a user's move or delete reaches SolarNexus, it is not reverted);
2. compare the calendar's SolarNexus events with the refs and the mirror and repair: missing events
   and wrong times or content are rewritten from the mirror, orphans (no ref, or on another
   calendar) deleted, milestones that should be there but never were pushed;
3. re-create a closed or missing push channel;
4. roll the busy window forward (Cronofy sends nothing when events enter its window as time passes);
5. refresh the access token before it lapses.
It stops before a user when the run's Cronofy request budget would be exceeded (the rest come next
run) and reports what it repaired (metrics and one log line per user).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from calsync.busy import Busy
from calsync.cronofy import BATCH_LIMIT, CronofyAuthError, CronofyError, CronofyRateLimited, InvalidGrant
from calsync.models import Connection, ConnectionState, iso, utcnow
from calsync.notifications import SOLARNEXUS_PREFIXES, NotificationProcessor, _norm
from calsync.observability import logger, metrics
from calsync.store import ConflictError, Store
from calsync.sync import BACKFILL_DAYS, SyncEngine

PER_USER_ESTIMATE = 6  # Cronofy requests a typical user costs: keep this much budget in hand
STUCK_AFTER = timedelta(minutes=15)


class Reconciler:
    def __init__(self, store: Store, service, engine: SyncEngine, processor: NotificationProcessor, busy: Busy,
                 budget: int):
        self.store = store
        self.service = service
        self.engine = engine
        self.processor = processor
        self.busy = busy
        self.budget = budget

    def run(self, user_ids: list[str]) -> dict:
        app = self.service.cronofy
        start_count = app.requests_sent
        totals: Counter = Counter()
        visited = 0
        for user_id in user_ids:
            if app.requests_sent - start_count + PER_USER_ESTIMATE > self.budget:
                totals["deferred_users"] += len(user_ids) - visited
                break
            visited += 1
            conn = self.store.get_connection(user_id)
            if conn is None:
                continue
            try:
                repairs = self.reconcile_user(conn)
            except CronofyRateLimited:
                totals["deferred_users"] += len(user_ids) - visited + 1
                break
            except CronofyError as error:
                repairs = Counter(errors=1)
                logger.warning("reconcile failed for user", extra={"user_id": user_id, "error": str(error)})
            totals.update(repairs)
            logger.info("reconciled", extra={"user_id": user_id, "repairs": dict(repairs)})
        totals["users"] = visited
        totals["cronofy_requests"] = app.requests_sent - start_count
        for name in ("missing", "moved", "orphans", "channels", "backfills_restarted", "busy_refreshed"):
            metrics.add_metric(name=f"Reconcile_{name}", unit="Count", value=totals.get(name, 0))
        return dict(totals)

    def reconcile_user(self, conn: Connection) -> Counter:
        repairs: Counter = Counter()
        now = utcnow()
        if conn.state == ConnectionState.DISCONNECTING and now - conn.updated_at > STUCK_AFTER:
            self.service.publisher.request_disconnect(conn.org_id, conn.user_id)  # a lost cleanup job
            repairs["cleanups_requeued"] += 1
            return repairs
        if conn.state not in (ConnectionState.CONNECTED, ConnectionState.SYNCING) or not conn.calendar_id:
            return repairs
        try:
            client = self.service.user_client(conn)
            if client.tokens.expired(leeway_seconds=15 * 60):
                client.refresh()  # the client's own refresh: stores (and caches) the rotated tokens
                repairs["tokens_refreshed"] += 1
            conn = self.service.refresh_timezone(conn, client, now)  # daily: all-day blocks are local
            if conn.state == ConnectionState.SYNCING and now - conn.updated_at > STUCK_AFTER:
                self._restart_backfill(conn)
                repairs["backfills_restarted"] += 1
            repairs.update(self._channel(conn, client))
            since = conn.last_reconciled_at or conn.connected_at
            self.processor.catch_up(conn, client, iso(since - timedelta(minutes=5)))
            # (only changes made after our own last write count as the user's; the rest is drift)
            repairs.update(self._events(conn, client))
            self.busy.refresh(conn, client, now)
            repairs["busy_refreshed"] += 1
        except (InvalidGrant, CronofyAuthError):
            self.service.mark_needs_reauth(conn, "authorization_revoked")
            repairs["needs_reauth"] += 1
            return repairs
        self._touch(conn.user_id, now)
        return repairs

    def _restart_backfill(self, conn: Connection) -> None:
        self.service.on_calendar_selected(conn, None)

    def _channel(self, conn: Connection, client) -> Counter:
        open_ids = {c.channel_id for c in client.list_channels()}
        if conn.channel_id in open_ids:
            return Counter()
        channel = client.create_channel(self.service.channel_callback_url(conn.user_id))
        for _ in range(3):
            fresh = self.store.get_connection(conn.user_id)
            if fresh is None:
                return Counter()
            try:
                self.store.save_connection(fresh.model_copy(update={"channel_id": channel.channel_id,
                                                                    "updated_at": utcnow()}))
                break
            except ConflictError:
                continue
        return Counter(channels=1)

    def _events(self, conn: Connection, client) -> Counter:
        repairs: Counter = Counter()
        refs = {r.event_id: r for r in self.store.refs_of_user(conn.user_id)}
        seen: set[str] = set()
        orphans: list[tuple[str, str]] = []
        rewrite: set[str] = set()
        for event in client.read_events(include_managed=True, only_managed=True, include_deleted=True):
            event_id = event.get("event_id") or ""
            if not event_id.startswith(SOLARNEXUS_PREFIXES):
                continue
            ref = refs.get(event_id)
            if event.get("deleted"):
                if ref is not None and ref.calendar_id == event["calendar_id"]:
                    seen.add(event_id)  # a tombstone: the user's delete (handled by the catch-up)
                continue
            if ref is None or ref.calendar_id != event["calendar_id"] or ref.removed_by_user_version is not None:
                orphans.append((event["calendar_id"], event_id))
                continue
            seen.add(event_id)
            times = (_norm(event["start"]), _norm(event["end"]))
            if times not in {(ref.start, ref.end), (ref.user_moved_start, ref.user_moved_end)}:
                rewrite.add(ref.milestone_id)
                repairs["moved"] += 1
            elif ref.summary is not None and event.get("summary") != ref.summary:
                rewrite.add(ref.milestone_id)
                repairs["content"] += 1
        for event_id, ref in refs.items():
            if event_id not in seen and ref.removed_by_user_version is None and ref.calendar_id == conn.calendar_id:
                rewrite.add(ref.milestone_id)
                repairs["missing"] += 1
        since = iso(utcnow() - timedelta(days=BACKFILL_DAYS))
        never_pushed = set(self.store.scheduled_for_user(conn.user_id, since)) - {r.milestone_id for r in refs.values()}
        if rewrite:
            self._forget(conn.user_id, rewrite)
        if rewrite or never_pushed:
            self.engine.sync(sorted(rewrite | never_pushed), only_user=conn.user_id)
        repairs["never_pushed"] += len(never_pushed)
        if orphans:
            for i in range(0, len(orphans), BATCH_LIMIT):
                chunk = orphans[i:i + BATCH_LIMIT]
                client.batch([{"method": "DELETE", "relative_url": f"/v1/calendars/{cal}/events",
                               "data": {"event_id": eid}} for cal, eid in chunk])
            repairs["orphans"] += len(orphans)
        return repairs

    def _forget(self, user_id: str, milestone_ids: set[str]) -> None:
        """Drop the refs of drifted events so the sync writes them again from the mirror."""
        for mid in milestone_ids:
            ref = self.store.get_ref(mid, user_id)
            if ref is not None:
                self.store.put_ref(ref.model_copy(update={"content_hash": "drifted"}))

    def _touch(self, user_id: str, now) -> None:
        for _ in range(3):
            conn = self.store.get_connection(user_id)
            if conn is None:
                return
            try:
                self.store.save_connection(conn.model_copy(update={"last_reconciled_at": now}))
                return
            except ConflictError:
                continue
