"""Crew slot finding: pure logic, no I/O (the availability route loads the data and calls `find_slots`).

A member is free for a slot [s, s + duration) when the slot lies inside one of their working windows
(working hours on a working weekday, in the member's own time zone) and does not come within
`buffer` of any of their busy periods (calendar busy blocks and SolarNexus assignments alike).
Candidate starts follow the working hours, not UTC: each member's working windows give the starts
window start + k x `interval` inside the window, and the candidates are these starts of all members
together, in time order, each once. So a crew working 08:00-17:00 gets 08:00, 08:30, ... local in any
zone (Kathmandu's +05:45 and St John's -03:30 included), an interval of 45 minutes still starts at
08:00, and an interval of 1440 gives 08:00 on each working day. A grid counted from 00:00 UTC would
start such crews at 08:15 or 08:30, or never. A slot is returned when at least `required` members
are free in it; its `user_ids` are all the free members (whether or not the start is on their own
grid), in the order they were asked for.

Local wall times are resolved as a person reads a clock: the working window of a day runs from the
first moment that day the clock shows the start time (or later) to the first moment it shows the end
time (or later). So a time repeated when clocks go back counts from its first occurrence, and a time
skipped when clocks go forward starts at the jump. Working hours of 08:00-17:00 are therefore
9 hours on every day, DST days included.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Longer assignments count as this long when the scheduler looks back for ones still running: a typo'd
# end (year 2206) must not make every availability request read a user's whole history.
LONGEST_ASSIGNMENT = timedelta(days=120)  # where whole seconds are counted from (not a slot grid)
Interval = tuple[datetime, datetime]


@dataclass(frozen=True)
class WorkingHours:
    weekdays: frozenset[int] = frozenset({1, 2, 3, 4, 5})  # ISO: 1 = Monday
    start: time = time(8, 0)
    end: time = time(17, 0)

    def __post_init__(self) -> None:
        if not self.weekdays or not self.weekdays <= set(range(1, 8)):
            raise ValueError("weekdays: ISO weekday numbers 1 (Monday) to 7 (Sunday)")
        if self.end <= self.start:
            raise ValueError("working hours must end after they start (same day)")


@dataclass(frozen=True)
class Assignment:
    """A SolarNexus milestone the member is assigned to: busy, like a calendar block."""

    milestone_id: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Member:
    user_id: str
    zone: ZoneInfo
    hours: WorkingHours
    busy: Sequence[Interval] = ()
    assignments: Sequence[Assignment] = ()


@dataclass(frozen=True)
class SlotQuery:
    start: datetime
    end: datetime
    duration: timedelta
    required: int
    buffer: timedelta = timedelta(0)
    interval: timedelta = timedelta(minutes=30)
    max_results: int = 10
    ignore_milestone_id: str | None = None


@dataclass(frozen=True)
class Slot:
    start: datetime
    end: datetime
    user_ids: tuple[str, ...] = field(default=())


def local_instant(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The first moment of `day` at which the clock in `zone` shows `wall` or later (UTC)."""
    naive = datetime.combine(day, wall)
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == naive:
        return first  # the wall time exists (fold=0 is its first occurrence when it repeats)
    # Skipped by a forward jump: the answer is the jump itself, between the two readings.
    before = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    lo, hi = min(before, first), max(before, first)
    offset = lo.astimezone(zone).utcoffset()
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(zone).utcoffset() == offset:
            lo = mid
        else:
            hi = mid
    return hi.replace(microsecond=0)


def all_day_period(first: date, last: date, zone: ZoneInfo) -> Interval:
    """The busy time of an all-day milestone from `first` to `last` (exclusive): local midnights in its
    zone, one day at least, since a one-day milestone may come with end == start (as on the calendar)."""
    return local_instant(first, time(0), zone), local_instant(max(last, first + timedelta(days=1)), time(0), zone)


def working_windows(member: Member, start: datetime, end: datetime) -> list[Interval]:
    """The member's working windows overlapping [start, end), in UTC."""
    first_day = start.astimezone(member.zone).date() - timedelta(days=1)
    last_day = end.astimezone(member.zone).date() + timedelta(days=1)
    windows = []
    day = first_day
    while day <= last_day:
        if day.isoweekday() in member.hours.weekdays:
            ws, we = local_instant(day, member.hours.start, member.zone), local_instant(day, member.hours.end,
                                                                                       member.zone)
            if we > ws and we > start and ws < end:
                windows.append((ws, we))
        day += timedelta(days=1)
    return windows


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for s, e in sorted(i for i in intervals if i[1] > i[0]):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def busy_periods(member: Member, query: SlotQuery) -> list[Interval]:
    """Calendar busy blocks and assignments (but the milestone being rescheduled), widened by the buffer."""
    periods = list(member.busy) + [(a.start, a.end) for a in member.assignments
                                   if a.milestone_id != query.ignore_milestone_id]
    return merge((s - query.buffer, e + query.buffer) for s, e in periods)


def free_periods(member: Member, query: SlotQuery) -> list[Interval]:
    """Working windows minus busy periods."""
    busy = busy_periods(member, query)
    free: list[Interval] = []
    i = 0
    for ws, we in working_windows(member, query.start, query.end):
        cursor = ws
        while i < len(busy) and busy[i][1] <= cursor:
            i += 1
        j = i
        while j < len(busy) and busy[j][0] < we:
            if busy[j][0] > cursor:
                free.append((cursor, busy[j][0]))
            cursor = max(cursor, busy[j][1])
            j += 1
        if cursor < we:
            free.append((cursor, we))
    return free


def _seconds(dt: datetime) -> int:
    return int((dt - EPOCH).total_seconds())


def grid_starts(windows: Iterable[Interval], step: int, lo: int, hi: int) -> Iterator[int]:
    """A member's candidate starts (whole seconds since EPOCH) in [lo, hi], in time order: each working
    window's start plus whole steps, inside the window. Anchored on the window, so that slots begin when
    work begins whatever the zone's offset from UTC and whatever `from` is."""
    for ws, we in windows:
        first, end = _seconds(ws), _seconds(we)
        s = first + max(0, -(-(lo - first) // step)) * step  # the first start at or after lo
        while s < end and s <= hi:
            yield s
            s += step


def candidate_starts(members: Sequence[Member], query: SlotQuery, lo: int, hi: int) -> Iterator[int]:
    """Every member's grid starts together, in time order, each once (lazy: the search stops at
    `max_results`)."""
    step = int(query.interval.total_seconds())
    grids = [grid_starts(working_windows(m, query.start, query.end), step, lo, hi) for m in members]
    last = None
    for s in heapq.merge(*grids):
        if s != last:
            yield s
            last = s


def find_slots(members: Sequence[Member], query: SlotQuery) -> list[Slot]:
    """The first `max_results` slots, in time order, in which at least `required` members are free."""
    if query.required < 1 or query.required > len(members):
        return []
    duration = int(query.duration.total_seconds())
    lo, hi = _seconds(query.start), _seconds(query.end) - duration  # a start s must satisfy lo <= s <= hi
    # Each member's valid starts: s with [s, s + duration) inside one free period, i.e. s in
    # [fs, fe - duration], kept half-open as [fs, fe - duration + 1) on whole seconds.
    changes: list[tuple[int, int, int]] = []
    for index, member in enumerate(members):
        for fs, fe in free_periods(member, query):
            a, b = max(_seconds(fs), lo), min(_seconds(fe) - duration, hi) + 1
            if a < b:
                changes.append((a, 1, index))
                changes.append((b, -1, index))
    changes.sort()
    free_now: set[int] = set()
    slots: list[Slot] = []
    k = 0
    for s in candidate_starts(members, query, lo, hi):
        while k < len(changes) and changes[k][0] <= s:  # the free set at s
            _, delta, index = changes[k]
            (free_now.add if delta > 0 else free_now.discard)(index)
            k += 1
        if len(free_now) >= query.required:
            start = EPOCH + timedelta(seconds=s)
            slots.append(Slot(start, start + query.duration, tuple(members[i].user_id for i in sorted(free_now))))
            if len(slots) >= query.max_results:
                break
    return slots
