"""How far a member's calendar data can be trusted, for the scheduler and the admin (issue 13).

One rule, used by the busy route, crew availability and sync health: a member's busy data is `stale`
when their connection is not syncing (none, `needs_reauth`, still `pending_calendar` or being
disconnected) or when it was last refreshed from Cronofy (`as_of`) longer ago than
`BUSY_STALE_AFTER_MINUTES`. The reconciler refreshes everyone hourly, so the default of three hours
means two missed visits.

The busy blocks themselves are read only through `read_busy`, so how they are stored can change
behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def read_busy(busy_store, user_ids: list[str]) -> dict[str, StoredBusy]:
    """Stored busy blocks by user (absent: never refreshed). BusyStore.get_many: ceil(n / 100) requests."""
    found = {}
    for user_id, item in busy_store.get_many(user_ids).items():
        blocks = []
        for pair in item.get("blocks", []):
            start, end = pair.split("/")
            blocks.append((_utc(start), _utc(end)))
        updated = item.get("updated_at")
        found[user_id] = StoredBusy(item.get("org_id"), blocks, _utc(updated) if updated else None)
    return found


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


def member_status(conn: Connection | None, busy: StoredBusy | None, now: datetime, stale_after: timedelta,
                  default_zone: ZoneInfo = UTC_ZONE) -> dict:
    """`{"connected", "state", "timezone", "as_of", "stale"}` for one member (`conn` None when the member has no
    connection in the caller's org)."""
    as_of = busy.as_of if busy is not None else None
    return {
        "connected": conn is not None and conn.state in LINKED_STATES,
        "state": conn.state.value if conn is not None else ConnectionState.NOT_CONNECTED.value,
        "timezone": user_zone(conn, default_zone).key,
        "as_of": iso(as_of),
        "stale": is_stale(conn, as_of, now, stale_after),
    }


def stale_after() -> timedelta:
    from calsync.config import get_settings

    return timedelta(minutes=get_settings().busy_stale_after_minutes)
