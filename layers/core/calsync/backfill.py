"""The backfill workflow's steps (statemachines/backfill.asl.json): plan -> Map over chunks ->
finalize, with `fail` as the Catch. Started when a calendar is selected or switched.

The state carries only chunk numbers; the milestone ids of each chunk are stored in DynamoDB, so
the execution stays far below the 256 KB payload limit however many milestones a user has.
"""

from __future__ import annotations

import time
from datetime import timedelta

from calsync.busy import Busy
from calsync.conflict_watch import ConflictWatch
from calsync.cronofy import CronofyError, CronofyRateLimited, CronofyUnavailable, InvalidGrant
from calsync.models import BackfillProgress, Connection, ConnectionState, iso, utcnow
from calsync.observability import logger, metrics
from calsync.ports import BackfillStepsStore, EventPublisher, TokenKeeper
from calsync.sync import BACKFILL_DAYS, SyncEngine

CHUNK_SIZE = 50
CHUNK_TTL_SECONDS = 7 * 24 * 3600


def _leave(client, user_id: str, calendar_id: str) -> None:
    """After a switch nothing of ours may stay on the old calendar: one bulk delete. An old calendar that
    was deleted, made read-only or is unreachable (why the user switched, often) cannot be emptied, and
    retrying will not change that: the switch still completes."""
    try:
        client.bulk_delete(calendar_ids=[calendar_id])
    except CronofyError as error:
        if isinstance(error, InvalidGrant | CronofyRateLimited | CronofyUnavailable) or error.status not in (
                403, 404, 422, 423):
            raise
        logger.warning("the old calendar could not be emptied", extra={"user_id": user_id, "status": error.status})

class BackfillChunkFailed(Exception):
    """Some writes of a chunk were refused for good (not throttling, not an outage)."""


class BackfillSteps:
    def __init__(self, store: BackfillStepsStore, engine: SyncEngine, tokens: TokenKeeper, publisher: EventPublisher,
                 busy: Busy, conflicts: ConflictWatch | None = None):
        self.store = store
        self.conflicts = conflicts  # conflict alerts judged on the rebuilt busy periods
        self.engine = engine
        self.tokens = tokens
        self.publisher = publisher
        self.busy = busy

    def _current(self, user_id: str, run_id: str) -> bool:
        progress = self.store.get_backfill(user_id)
        return bool(progress and progress.get("run_id") == run_id)

    def plan(self, event: dict) -> dict:
        user_id, run_id = event["user_id"], event["run_id"]
        conn = self.store.get_connection(user_id)
        if conn is None or not conn.calendar_id or not self._current(user_id, run_id):
            return {"chunks": [], "total": 0, "stale": True}
        since = iso(utcnow() - timedelta(days=BACKFILL_DAYS))
        ids = self.store.scheduled_for_user(user_id, since)
        # Every event already written for the user, however old: a switch moves them to the new calendar, and
        # after a relink (needs_reauth) those whose milestone moved on or left the user meanwhile are written
        # again or removed (the sync decides from the mirror; unchanged ones cost no Cronofy request).
        ids += [r.milestone_id for r in self.store.refs_of_user(user_id)]
        ids = list(dict.fromkeys(ids))
        chunks = [ids[i:i + CHUNK_SIZE] for i in range(0, len(ids), CHUNK_SIZE)]
        self.store.put_chunks(run_id, chunks, int(time.time()) + CHUNK_TTL_SECONDS)
        self.store.put_backfill(user_id, run_id, BackfillProgress(done=0, total=len(ids), status="running"),
                                started_at=time.time())
        logger.info("backfill planned", extra={"user_id": user_id, "milestones": len(ids), "chunks": len(chunks)})
        return {"chunks": list(range(len(chunks))), "total": len(ids), "stale": False}

    def chunk(self, event: dict) -> dict:
        user_id, run_id, n = event["user_id"], event["run_id"], int(event["chunk"])
        ids = self.store.get_chunk(run_id, n)
        result = self.engine.sync(ids, only_user=user_id)
        for error in result.errors:
            if isinstance(error, CronofyRateLimited | CronofyUnavailable):
                raise error  # the state machine's Retry backs off and tries the chunk again
        if result.failed:
            raise BackfillChunkFailed(f"{len(result.failed)} of {len(ids)} milestones could not be written")
        self.store.add_backfill_done(user_id, run_id, len(ids))
        return {"chunk": n, "written": result.written, "requests": result.cronofy_batches}

    def finalize(self, event: dict) -> dict:
        user_id, run_id = event["user_id"], event["run_id"]
        if not self._current(user_id, run_id):
            # A newer choice replaced this run: it ends as a success (the state machine reads `total`), not
            # as a failure that would wake the on-call engineer for a user who switched twice.
            return {"stale": True, "total": 0}
        conn = self.store.get_connection(user_id)
        previous = event.get("previous_calendar_id")
        busy_built = False
        if conn and conn.state != ConnectionState.SYNCING:
            # The chosen calendar refused our writes meanwhile (back to pending_calendar) or the user left:
            # the old calendar keeps its events, nothing is settled here.
            conn = None
        if conn:
            try:
                client = self.tokens.user_client(conn)
                if previous and previous != conn.calendar_id:
                    _leave(client, user_id, previous)
                # The calendar's existing appointments become busy periods now, not at the first change
                # (Cronofy skips profile_initial_sync_completed when its sync finished before the channel).
                # A failure here does not fail the backfill: the reconciler rebuilds them on its next visit.
                try:
                    self.busy.rebuild(conn, client)
                    busy_built = True
                except (CronofyRateLimited, CronofyUnavailable):
                    raise
                except Exception:  # noqa: BLE001 - see above
                    logger.exception("busy periods not rebuilt at backfill end", extra={"user_id": user_id})
                if busy_built:
                    self._conflicts(conn)
            except InvalidGrant:
                pass
        progress = self.store.get_backfill(user_id) or {}
        total = int(progress.get("total", 0))
        if progress.get("started_at") is not None:
            metrics.add_metric(name="BackfillDuration", unit="Seconds",
                               value=round(time.time() - float(progress["started_at"]), 3))
        metrics.add_metric(name="BackfillMilestones", unit="Count", value=total)
        self.store.put_backfill(user_id, run_id, BackfillProgress(done=total, total=total, status="succeeded"))
        self._settle(user_id, None, busy_built)
        return {"stale": False, "total": total}

    def _conflicts(self, conn: Connection) -> None:
        """The calendar's appointments just read against the user's assignments (conflict alerts). A failure
        does not fail the backfill: the notification processor's next read or the day's check judges again."""
        if self.conflicts is None:
            return
        try:
            self.conflicts.user_changed(conn.model_copy(update={"busy_rebuilt_at": utcnow()}))
        except Exception:  # noqa: BLE001 - see above
            logger.exception("conflicts not judged at backfill end", extra={"user_id": conn.user_id})

    def fail(self, event: dict) -> dict:
        user_id, run_id = event["user_id"], event["run_id"]
        error = (event.get("error") or {}).get("Error", "unknown")
        if not self._current(user_id, run_id):
            return {"stale": True}
        progress = self.store.get_backfill(user_id) or {}
        self.store.put_backfill(user_id, run_id, BackfillProgress(
            done=int(progress.get("done", 0)), total=int(progress.get("total", 0)), status="failed"), error=error)
        self._settle(user_id, f"calendar backfill failed ({error}); it will be retried")
        logger.warning("backfill failed", extra={"user_id": user_id, "error": error})
        return {"stale": False}

    def _settle(self, user_id: str, error: str | None, busy_built: bool = False) -> None:
        settled: list[Connection] = []

        def settle(conn: Connection) -> Connection | None:
            settled.clear()  # only the last attempt counts
            if conn.state != ConnectionState.SYNCING:
                return None  # moved on meanwhile (a disconnect, a newer backfill): not ours to settle
            now = utcnow()
            # Every event was just written: the reconciler's first full check is a day away; busy
            # periods not built here are rebuilt on its first visit.
            settled.append(conn)
            return conn.model_copy(update={
                "state": ConnectionState.CONNECTED, "last_error": error,
                "last_error_at": now if error is not None else None,
                "last_sync_at": now if error is None else conn.last_sync_at, "updated_at": now,
                "last_checked_at": now if error is None else conn.last_checked_at,
                "busy_rebuilt_at": now if busy_built else None})

        saved = self.store.update_connection(user_id, settle)
        if saved is not None and settled and saved.state == ConnectionState.CONNECTED:
            self.publisher.connection_changed(saved.org_id, user_id, ConnectionState.CONNECTED, error)

