"""Teammates' busy times for the scheduler (ARCHITECTURE §6).

Refreshed from Cronofy free/busy when a user's other events change (managed events excluded by
Cronofy's default, "free"/"Show as Free" blocks dropped here); stored as merged start/end pairs so
the scheduler's route answers from DynamoDB alone, with no Cronofy call.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from calsync import freshness
from calsync.caller import Caller
from calsync.errors import ApiError
from calsync.models import Connection, iso, utcnow
from calsync.observability import metrics
from calsync.slots import local_instant
from calsync.store import BusyStore, Store

DAYS_BACK = 1
DAYS_AHEAD = 60
MAX_USERS = 200
MAX_SPAN_DAYS = 62


def _instant(value: str, zone: ZoneInfo = freshness.UTC_ZONE) -> datetime:
    """A free/busy bound: a Time, or a Date (all-day blocks: from the user's local midnight, in `zone`)."""
    if len(value) == 10:
        return local_instant(date.fromisoformat(value), time(0), zone)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def merge(intervals: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


class Busy:
    def __init__(self, busy_store: BusyStore, store: Store | None = None):
        self.store = busy_store
        self.connections = store  # the scheduler's view flags stale members (calsync.freshness)

    def refresh(self, conn: Connection, client, now: datetime | None = None) -> int:
        """Re-read the user's free/busy for the scheduler's window; returns the number of blocks kept."""
        now = now or utcnow()
        window_from, window_to = (now - timedelta(days=DAYS_BACK)).date(), (now + timedelta(days=DAYS_AHEAD)).date()
        blocks, zone = [], freshness.user_zone(conn)
        for block in client.free_busy(**{"from": window_from.isoformat(), "to": window_to.isoformat()}):
            if block.get("free_busy_status") == "free":
                continue  # "Show as Free": not busy. tentative/unknown count as busy.
            blocks.append((_instant(block["start"], zone), _instant(block["end"], zone)))
        merged = merge(blocks)
        metrics.add_metric(name="BusyRefreshes", unit="Count", value=1)
        self.store.put(conn.user_id, conn.org_id, [(iso(s), iso(e)) for s, e in merged],
                       window_from.isoformat(), window_to.isoformat(), iso(now))
        return len(merged)

    def for_scheduler(self, caller: Caller, org_id: str, user_ids: list[str], start: datetime,
                      end: datetime) -> dict:
        caller.require_org(org_id)
        if not user_ids or len(user_ids) > MAX_USERS:
            raise ApiError(422, "invalid_request", f"user_ids: between 1 and {MAX_USERS} ids")
        if end <= start or end - start > timedelta(days=MAX_SPAN_DAYS):
            raise ApiError(422, "invalid_request", f"to must be after from, at most {MAX_SPAN_DAYS} days later")
        stored = freshness.read_busy(self.store, user_ids)
        conns = self.connections.connections(user_ids) if self.connections is not None else {}
        now, stale_after = utcnow(), freshness.stale_after()
        users: dict[str, list[dict[str, str]]] = {}
        members: dict[str, dict] = {}
        for user_id in user_ids:
            conn = conns.get(user_id)
            busy = stored.get(user_id)
            if conn is not None and conn.org_id != org_id:
                conn = None
            if busy is None or busy.org_id != org_id:
                busy = None  # not connected (or not in this org): nothing to show
            clipped = [(max(s, start), min(e, end)) for s, e in (busy.blocks if busy else [])]
            users[user_id] = [{"start": iso(s), "end": iso(e)} for s, e in merge(clipped)]
            members[user_id] = freshness.member_status(conn, busy, now, stale_after)
        return {"users": users, "members": members}
