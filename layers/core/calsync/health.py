"""Sync health for org admins: `GET /v1/orgs/{org_id}/calendar-health` (ARCHITECTURE §2, issue 13).

Per member with a connection in the org: state, provider, calendar, last successful sync, last error
with its reason and time, backfill progress, the stale flag (calsync.freshness) and how many events we
keep on their calendar. So a sync that stopped is seen by someone, not discovered by a double booking.

Each member's open conflicts too (issue 23: an assigned milestone, not over yet, that their own busy time
overlaps), so a scheduler sees the dentist before the crew reaches the roof.

From DynamoDB alone, for n members: 1 query of GSI by_org (per 1 MB), ceil(n / 100) BatchGetItems of
busy bookkeeping (as_of) and of backfill progress, one COUNT query per member for the managed events, and
1 query of the org's open conflicts (per 1 MB).
"""

from __future__ import annotations

from datetime import datetime

from calsync import freshness
from calsync.busy import Busy
from calsync.caller import Caller
from calsync.conflicts import Conflict
from calsync.errors import Forbidden
from calsync.models import CHANNEL_UNCONFIRMED_AFTER, Connection, ConnectionState, iso, utcnow
from calsync.store import Store


def open_conflicts(stored: list[Conflict], now: datetime) -> dict[str, list[dict]]:
    """Each member's open conflicts (calsync.conflicts) on milestones not over yet, by milestone start. One
    being resolved is no longer shown; one whose detection is still being sent already is."""
    found: dict[str, list[dict]] = {}
    for c in sorted(stored, key=lambda c: (c.span, c.milestone_id)):
        if c.state == "resolving" or c.span[1] <= now:
            continue
        found.setdefault(c.user_id, []).append({
            "conflict_id": c.conflict_id, "milestone_id": c.milestone_id, "milestone_version": c.milestone_version,
            "milestone_start": iso(c.span[0]), "milestone_end": iso(c.span[1]),
            "overlap": {"start": iso(c.overlap[0]), "end": iso(c.overlap[1])}, "detected_at": iso(c.detected_at)})
    return found


class SyncHealth:
    def __init__(self, store: Store, busy: Busy):
        self.store = store
        self.busy = busy

    def for_org(self, caller: Caller, org_id: str, now: datetime | None = None) -> dict:
        caller.require_org(org_id)
        if not caller.is_admin:
            raise Forbidden("sync health is for org admins")
        now = now or utcnow()
        connections = sorted(self.store.connections_in_org(org_id), key=lambda c: c.user_id)
        ids = [c.user_id for c in connections]
        busy = self.busy.periods(ids) if ids else {}  # as_of only: no weeks read
        backfills = self.store.backfills(ids) if ids else {}
        conflicts = open_conflicts(self.store.conflicts_of_org(org_id), now) if ids else {}
        stale_after = freshness.stale_after()
        members = [self._member(c, busy.get(c.user_id), backfills.get(c.user_id), now, stale_after)
                   | {"conflicts": conflicts.get(c.user_id, [])} for c in connections]
        return {
            "members": members,
            "summary": {
                "members": len(members),
                "stale": sum(m["stale"] for m in members),
                "needs_reauth": sum(m["state"] == ConnectionState.NEEDS_REAUTH.value for m in members),
                "with_errors": sum(m["last_error"] is not None for m in members),
                "conflicts": sum(len(m["conflicts"]) for m in members),
            },
            "checked_at": iso(now),
        }

    def _member(self, conn: Connection, stored, backfill: dict | None, now: datetime, stale_after) -> dict:
        as_of = freshness.as_of(conn, stored if stored is not None and stored.org_id == conn.org_id else None)
        # The last time data moved successfully: the connection's own (Connection.last_synced, as the
        # status route shows it), or a later read of the user's changes (busy data).
        last_sync = max((t for t in (conn.last_synced(), as_of) if t is not None), default=None)
        error = None
        if conn.last_error:
            error = {"reason": conn.last_error, "at": iso(conn.last_error_at or conn.updated_at)}
        elif backfill and backfill.get("status") == "failed":
            error = {"reason": f"backfill_failed: {backfill.get('error') or 'unknown'}",
                     "at": iso(conn.updated_at)}
        unconfirmed = conn.channel_unconfirmed(now)
        if unconfirmed and error is None:
            # No notification through the push channel, and not listed at Cronofy, for over a day: it may
            # be gone (calendar changes would then send nothing) until the reconciler's visit mends it.
            error = {"reason": "push_channel_unconfirmed",
                     "at": iso((conn.channel_seen_at or conn.connected_at) + CHANNEL_UNCONFIRMED_AFTER)}
        progress = None
        if backfill:
            progress = {"done": int(backfill.get("done", 0)), "total": int(backfill.get("total", 0)),
                        "status": backfill.get("status")}
        return {
            "user_id": conn.user_id,
            "state": conn.state.value,
            "provider": conn.provider,
            "profile_name": conn.profile_name,
            "calendar_name": conn.calendar_name,
            "timezone": conn.timezone,
            "connected_at": iso(conn.connected_at),
            "last_sync_at": iso(last_sync),
            "as_of": iso(as_of),
            "last_error": error,
            "stale": freshness.is_stale(conn, as_of, now, stale_after) or unconfirmed,
            "backfill": progress,
            "managed_events": self.store.count_managed_events(conn.user_id),
        }
