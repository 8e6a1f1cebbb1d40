"""How far a member's calendar data can be trusted, for the scheduler and the admin (issue 13).

One rule, used by the busy route, crew availability and sync health: a member's busy data is `stale`
when their connection is not syncing (none, `needs_reauth`, still `pending_calendar` or being
disconnected) or when it was last known current (`as_of`) longer ago than `BUSY_STALE_AFTER_MINUTES`.
`as_of` is the later of the last write of their busy periods (a rebuild, or a change applied) and the
last time a notification's Read Events read their changes (which refreshes busy periods whenever
their own events changed). A quiet calendar sends nothing and is rebuilt weekly by the reconciler, so
the default is 8 days. Busy periods are kept only DAYS_AHEAD (60) days ahead of their last rebuild
(calsync.busy.covered_until): a member asked about days past that is `stale` too, as their busy time
there is unknown, not free. So is a member whose weeks asked hold merged blocks an event changed inside
(`StoredBusy.unsure`, calsync.busy.Busy.apply): those blocks stay busy until the next rebuild.

The busy periods themselves are read only through `Busy.periods` (calsync/busy.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from calsync.models import Connection, ConnectionState, iso

SYNCING_STATES = {ConnectionState.CONNECTED, ConnectionState.SYNCING}
LINKED_STATES = SYNCING_STATES | {ConnectionState.NEEDS_REAUTH}
UTC_ZONE = ZoneInfo("UTC")


@dataclass(frozen=True)
class StoredBusy:
    org_id: str | None
    blocks: list[tuple[datetime, datetime]]  # UTC, merged, sorted
    as_of: datetime | None  # the last successful refresh from Cronofy
    unsure: bool = False  # a week read holds merged blocks an event changed inside: busy as stored, but stale


def user_zone(conn: Connection | None, default: ZoneInfo = UTC_ZONE) -> ZoneInfo:
    """The member's own zone (from their calendar account), else `default`."""
    if conn is not None and conn.timezone:
        try:
            return ZoneInfo(conn.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return default


def is_stale(conn: Connection | None, as_of: datetime | None, now: datetime, stale_after: timedelta) -> bool:
    if conn is None or conn.state not in SYNCING_STATES or as_of is None:
        return True
    return now - as_of > stale_after


def as_of(conn: Connection | None, busy: StoredBusy | None) -> datetime | None:
    """When the member's busy data was last known current (None: never)."""
    moments = [busy.as_of if busy is not None else None, conn.changes_read_at if conn is not None else None]
    return max((m for m in moments if m is not None), default=None)


def member_status(conn: Connection | None, busy: StoredBusy | None, now: datetime, stale_after: timedelta,
                  default_zone: ZoneInfo = UTC_ZONE, covered: bool = True) -> dict:
    """`{"connected", "state", "timezone", "as_of", "stale"}` for one member (`conn` None when the member has no
    connection in the caller's org); `covered` False when the asked range goes past what their stored busy
    periods cover, which makes them stale however fresh the data is."""
    known = as_of(conn, busy)
    return {
        "connected": conn is not None and conn.state in LINKED_STATES,
        "state": conn.state.value if conn is not None else ConnectionState.NOT_CONNECTED.value,
        "timezone": user_zone(conn, default_zone).key,
        "as_of": iso(known),
        "stale": is_stale(conn, known, now, stale_after) or not covered or (busy is not None and busy.unsure),
    }


def stale_after() -> timedelta:
    from calsync.config import get_settings

    return timedelta(minutes=get_settings().busy_stale_after_minutes)
