"""Teammates' busy times for the scheduler (ARCHITECTURE §6).

Kept from the Read Events requests the service makes anyway, with no free/busy call of their own:
- a `change` notification's Read Events (`last_modified`) returns the user's changed events: each one
  updates its own busy period (`apply`);
- a full rebuild (`rebuild`, one Read Events of the user's own events over the window) runs when a
  backfill finishes, when Cronofy says a profile's first sync completed, and weekly from the
  reconciler (events entering Cronofy's window as time passes are not notified).
Only start and end are stored, under a hash of the event's id: no title, no details. Storage is bounded
whatever the calendar holds: an event is stored only in the weeks it overlaps within the scheduler's
window (a day back, DAYS_AHEAD ahead: one event to 9999 is ~10 weeks, not 415,000), and a week too busy
for one item keeps merged blocks instead of events (`week_form`). Managed
(SolarNexus) events are never busy blocks here; "Show as Free" (transparent), cancelled and declined
events are not busy; tentative counts as busy. The route answers from DynamoDB alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from calsync import freshness
from calsync.caller import Caller
from calsync.clock import parse_utc
from calsync.cronofy_event import CronofyEvent, events_of
from calsync.errors import InvalidRequest
from calsync.models import Connection, iso, utcnow
from calsync.observability import metrics
from calsync.ports import BusyWeeks, ConnectionStore, EventReader
from calsync.repositories.busy import ONE_ITEM, WEEK_CAPACITY, entry_size, periods_size
from calsync.slots import local_instant

DAYS_BACK = 1
DAYS_AHEAD = 60
MAX_USERS = 200
MAX_SPAN_DAYS = 62
KEEP_WEEKS_AFTER = timedelta(days=14)
MERGED = "~"  # the key prefix of merged blocks (event keys are hex)


def _instant(value: str, zone: ZoneInfo = freshness.UTC_ZONE) -> datetime:
    """A busy bound: a Time, or a Date (all-day events: from local midnight in `zone`, the user's when
    read for the scheduler; week bucketing takes 00:00 UTC and reads a day more on each side)."""
    if len(value) == 10:
        return local_instant(date.fromisoformat(value), time(0), zone)
    return parse_utc(value)


def merge(intervals: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def week_of(moment: datetime) -> str:
    """The Monday (ISO date) of the week holding `moment` (UTC)."""
    day = moment.astimezone(UTC).date()
    return (day - timedelta(days=day.weekday())).isoformat()


def weeks_between(start: datetime, end: datetime) -> list[str]:
    """Every week overlapping [start, end)."""
    weeks, monday = [], date.fromisoformat(week_of(start))
    last = end - timedelta(microseconds=1) if end > start else start
    while monday <= last.astimezone(UTC).date():
        weeks.append(monday.isoformat())
        monday += timedelta(days=7)
    return weeks


def event_key(raw: CronofyEvent | Mapping[str, Any]) -> str:
    """What identifies an event's busy period: a hash of its uid. Each occurrence of a recurring event
    has its own `event_uid` (the series shares `series_identifier` instead, as in the reference's
    read_events_page2 fixture), so the uid alone follows an occurrence the user moves; keying it by its
    start as well left the old time behind as a busy block until the next rebuild."""
    event = CronofyEvent.of(raw)
    ident = event.event_uid or event.event_id or ""
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def busy_period(raw: CronofyEvent | Mapping[str, Any]) -> str | None:
    """"start/end" when the event makes its owner busy, else None."""
    event = CronofyEvent.of(raw)
    if event.deleted or event.transparency == "transparent":
        return None
    if event.status == "cancelled" or event.participation_status == "declined":
        return None
    start, end = event.start, event.end
    if not isinstance(start, str) or not isinstance(end, str) or _instant(end) <= _instant(start):
        return None
    return f"{start}/{end}"


def _window(now: datetime) -> tuple[date, date]:
    """The dates a rebuild keeps busy periods for: a day back, DAYS_AHEAD ahead."""
    return (now - timedelta(days=DAYS_BACK)).date(), (now + timedelta(days=DAYS_AHEAD)).date()


def window_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The instants of the window busy periods are stored for (`_window`, UTC midnights)."""
    first, last = _window(now)
    return _instant(first.isoformat()), _instant(last.isoformat())


def stored_weeks(start: datetime, end: datetime, first: datetime, last: datetime) -> list[str]:
    """The weeks a busy period [start, end) is stored in: those it overlaps within the window [first, last),
    whatever its length (a period outside the window is stored nowhere)."""
    low, high = max(start, first), min(end, last)
    return weeks_between(low, high) if high > low else []


def _week_bounds(week: str) -> tuple[datetime, datetime]:
    monday = datetime.combine(date.fromisoformat(week), time(0), UTC)
    return monday, monday + timedelta(days=7)


def _close_smallest_gaps(blocks: list[tuple[datetime, datetime]], keep: int) -> list[tuple[datetime, datetime]]:
    """`blocks` (merged, sorted) as at most `keep` blocks: the smallest gaps between them closed (busy over
    them), the earliest first among equal gaps."""
    if len(blocks) <= keep:
        return blocks
    gaps = sorted(range(1, len(blocks)), key=lambda i: (blocks[i][0] - blocks[i - 1][1], i))
    closed = set(gaps[:len(blocks) - max(keep, 1)])
    out = [blocks[0]]
    for i in range(1, len(blocks)):
        out[-1:] = [(out[-1][0], blocks[i][1])] if i in closed else [out[-1], blocks[i]]
    return out


def week_form(week: str, periods: dict[str, str]) -> dict[str, str]:
    """What is stored for a week: its periods by event key while they fit in one item (repositories.busy
    ONE_ITEM); else merged blocks under MERGED keys: timed periods clipped to the week, overlapping and
    adjacent ones joined, all-day ones (their instants depend on the reader's zone) clipped to the week
    and a day each side, each once; and when even those exceed WEEK_CAPACITY, the smallest gaps between
    blocks closed until they fit. Never less busy than the periods given."""
    if periods_size(periods) <= ONE_ITEM:
        return periods
    monday, next_monday = _week_bounds(week)
    days = ((monday - timedelta(days=1)).date().isoformat(), (next_monday + timedelta(days=1)).date().isoformat())
    timed: list[tuple[datetime, datetime]] = []
    all_day: set[str] = set()
    for period in periods.values():
        start, end = period.split("/")
        if len(start) == 10 or len(end) == 10:
            all_day.add(f"{max(start[:10], days[0])}/{min(end[:10], days[1])}")
        else:
            timed.append((max(parse_utc(start), monday), min(parse_utc(end), next_monday)))
    days_form = {f"{MERGED}d{i}": p for i, p in enumerate(sorted(all_day))}
    blocks = merge(timed)
    form = {**days_form, **{f"{MERGED}{i}": f"{iso(s)}/{iso(e)}" for i, (s, e) in enumerate(blocks)}}
    if periods_size(form) <= WEEK_CAPACITY:
        return form
    room = WEEK_CAPACITY - periods_size(days_form)
    largest = entry_size(f"{MERGED}{len(blocks)}", f"{iso(monday)}/{iso(next_monday)}")
    blocks = _close_smallest_gaps(blocks, max(1, room // largest))
    return {**days_form, **{f"{MERGED}{i}": f"{iso(s)}/{iso(e)}" for i, (s, e) in enumerate(blocks)}}


def _created_after(event: CronofyEvent, item: Mapping[str, Any] | None) -> bool:
    """Whether the event was created (Cronofy's `created`) after the week's item was written (its stamp is
    taken before the read it was built from): then it is not inside the item's merged blocks. A wrong
    answer (clocks apart) can only leave a removed event's time busy, never make busy time free."""
    written = (item or {}).get("updated_at")
    if not event.created or not written:
        return False
    try:
        return parse_utc(event.created) > parse_utc(written)
    except (TypeError, ValueError, OverflowError):
        return False


def is_merged(periods: Mapping[str, str]) -> bool:
    """Whether a week's periods hold merged blocks (which name no event)."""
    return any(key.startswith(MERGED) for key in periods)


def covered_until(conn: Connection | None, now: datetime) -> datetime:
    """Up to when a member's stored busy periods are complete: the end of the window of their last
    rebuild (`busy_rebuilt_at`, on the connection the routes read anyway). Later events were never
    read (a change notified there is applied, the others are unknown), so a range asked past this
    must not look free; without a recorded rebuild, the window one made now would keep."""
    rebuilt = conn.busy_rebuilt_at if conn is not None and conn.busy_rebuilt_at is not None else now
    return _instant(_window(rebuilt)[1].isoformat())


def _expiry(week: str) -> int:
    return int((datetime.combine(date.fromisoformat(week), datetime.min.time(), UTC)
                + timedelta(days=7) + KEEP_WEEKS_AFTER).timestamp())


class Busy:
    def __init__(self, busy_store: BusyWeeks, store: ConnectionStore | None = None):
        self.store = busy_store
        self.connections = store  # the scheduler's view flags stale members (calsync.freshness)

    def apply(self, conn: Connection, changed_events: Iterable[CronofyEvent | Mapping[str, Any]],
              now: datetime | None = None) -> int:
        """Update the busy periods of these changed (non-SolarNexus) events; returns how many weeks changed.
        A changed event not found by its key may have been inside a week's merged blocks, which name no
        event (unless Cronofy says it was created after the week was written): those weeks stay as busy
        as they were and are `unsure` (stale) until the next rebuild, which the reconciler's next visit
        makes (busy_rebuilt_at is cleared)."""
        events = [CronofyEvent.of(e) for e in changed_events]
        if not events:
            return 0
        now = now or utcnow()
        first, last = window_bounds(now)
        stored = self.store.weeks_of_user(conn.user_id)
        weeks = {w: dict(item.get("periods") or {}) for w, item in stored.items()}
        unsure = {w for w, item in stored.items() if item.get("unsure")}
        changed: set[str] = set()
        for event in events:
            key = event_key(event)
            found = False
            for week, periods in weeks.items():
                if periods.pop(key, None) is not None:
                    changed.add(week)
                    found = True
            if not found:
                blurred = {w for w, periods in weeks.items()
                           if is_merged(periods) and not _created_after(event, stored.get(w))} - unsure
                unsure |= blurred
                changed |= blurred
            period = busy_period(event)
            if period is None:
                continue
            start, end = (_instant(x) for x in period.split("/"))
            for week in stored_weeks(start, end, first, last):
                weeks.setdefault(week, {})[key] = period
                changed.add(week)
        written = self._write(conn, {w: weeks[w] for w in changed}, stored, unsure, now)
        if unsure - {w for w, item in stored.items() if item.get("unsure")} and self.connections is not None:
            # Newly unsure: the reconciler's next visit (within a day) rebuilds the busy periods.
            self.connections.update_connection(conn.user_id, lambda c: c.model_copy(update={"busy_rebuilt_at": None}))
        return written

    def rebuild(self, conn: Connection, client: EventReader, now: datetime | None = None) -> int:
        """Re-read the user's own events over the scheduler's window (one Read Events, paged) and store
        their busy periods afresh; returns the number of periods kept."""
        now = now or utcnow()
        window_from, window_to = _window(now)
        # include_managed defaults to false: only the user's own events, never SolarNexus's.
        return self.rebuild_from(conn, events_of(client.read_events(**{"from": window_from.isoformat(),
                                                                       "to": window_to.isoformat()})), now)

    def rebuild_from(self, conn: Connection, own_events: Iterable[CronofyEvent | Mapping[str, Any]],
                     now: datetime | None = None) -> int:
        """Store afresh the busy periods of these events (every one of the user's own events over a window
        holding the scheduler's: a read made anyway, e.g. the day's check); returns how many were kept.
        Only the weeks whose stored periods differ are written."""
        now = now or utcnow()
        first, last = window_bounds(now)
        stored = self.store.weeks_of_user(conn.user_id)
        weeks: dict[str, dict[str, str]] = {w: {} for w in stored}
        kept = 0
        for event in own_events:
            period = busy_period(event)
            if period is None:
                continue
            start, end = (_instant(x) for x in period.split("/"))
            places = stored_weeks(start, end, first, last)
            kept += bool(places)
            for week in places:
                weeks.setdefault(week, {})[event_key(event)] = period
        self._write(conn, weeks, stored, set(), now)
        return kept

    def _write(self, conn: Connection, weeks: dict[str, dict[str, str]], stored: dict[str, dict],
               unsure: set[str], now: datetime | None) -> int:
        """Store these weeks in their stored form (week_form), those that differ from what is stored;
        returns how many were written."""
        stamp = iso(now or utcnow())
        forms = {w: week_form(w, periods) if periods else {} for w, periods in weeks.items()}
        differ = {w: form for w, form in forms.items()
                  if (stored.get(w) or {}).get("periods", {}) != form or (w in unsure) != bool((stored.get(w) or {})
                                                                                             .get("unsure"))}
        differ = {w: form for w, form in differ.items() if form or w in stored}
        if differ:
            self.store.write_weeks(conn.user_id, conn.org_id, differ, stamp, {w: _expiry(w) for w in differ},
                                   previous=stored, unsure=unsure & set(differ))
        self.store.touch(conn.user_id, conn.org_id, stamp)
        metrics.add_metric(name="BusyRefreshes", unit="Count", value=1)
        metrics.add_metric(name="BusyWeeksWritten", unit="Count", value=len(differ))
        return len(differ)

    def for_scheduler(self, caller: Caller, org_id: str, user_ids: list[str], start: datetime,
                      end: datetime) -> dict:
        caller.require_org(org_id)
        if not user_ids or len(user_ids) > MAX_USERS:
            raise InvalidRequest(f"user_ids: between 1 and {MAX_USERS} ids")
        if end <= start or end - start > timedelta(days=MAX_SPAN_DAYS):
            raise InvalidRequest(f"to must be after from, at most {MAX_SPAN_DAYS} days later")
        conns = self.connections.connections(user_ids) if self.connections is not None else {}
        conns = {u: c for u, c in conns.items() if c.org_id == org_id}
        stored = self.periods(user_ids, start, end, {u: freshness.user_zone(c) for u, c in conns.items()})
        now, stale_after = utcnow(), freshness.stale_after()
        users: dict[str, list[dict[str, str]]] = {}
        members: dict[str, dict] = {}
        for user_id in user_ids:
            busy = stored.get(user_id)
            if busy is None or busy.org_id != org_id:
                busy = None  # not connected (or not in this org): nothing to show
            clipped = [(max(s, start), min(e, end)) for s, e in (busy.blocks if busy else [])]
            users[user_id] = [{"start": iso(s), "end": iso(e)} for s, e in merge(clipped)]
            conn = conns.get(user_id)
            members[user_id] = freshness.member_status(conn, busy, now, stale_after,
                                                       covered=end <= covered_until(conn, now))
        return {"users": users, "members": members}

    def periods(self, user_ids: list[str], start: datetime | None = None, end: datetime | None = None,
                zones: dict[str, ZoneInfo] | None = None) -> dict[str, freshness.StoredBusy]:
        """Each user's stored busy periods overlapping [start, end), merged, in UTC (all-day ones from
        local midnight in the user's zone from `zones`, else UTC), and when they were last refreshed;
        without a range, only the latter. The one read of busy periods for the scheduler's routes:
        ceil(users x (weeks + 1) / 100) BatchGetItem requests (BusyStore.get_many)."""
        # All-day periods are bucketed by their UTC dates: read one more day each side.
        weeks = weeks_between(start - timedelta(days=1), end + timedelta(days=1)) if start and end else []
        found: dict[str, freshness.StoredBusy] = {}
        for user_id, item in self.store.get_many(user_ids, weeks).items():
            zone = (zones or {}).get(user_id, freshness.UTC_ZONE)
            blocks = []
            for pair in set(item.get("periods", [])):
                s, e = (_instant(x, zone) for x in pair.split("/"))
                if start and end:
                    if e <= start or s >= end:
                        continue
                    s, e = max(s, start), min(e, end)  # (an end in 9999 has no room for a buffer)
                blocks.append((s, e))
            updated = item.get("updated_at")
            found[user_id] = freshness.StoredBusy(item.get("org_id"), merge(blocks),
                                                  _instant(updated) if updated else None,
                                                  unsure=bool(item.get("unsure")))
        return found
