"""Conflict alerts, the rule (issue 23, ARCHITECTURE §4): pure, no I/O. `calsync.conflict_watch` loads
what it needs, asks `judge` and stores and sends what it answers.

A conflict is a scheduled milestone assigned to a connected user whose own busy time (their stored busy
periods: never SolarNexus's events, never "Show as Free", tentative counted) covers part of it.
- Its overlap is the union of those busy periods clipped to the milestone, sent as one interval from
  the first covered moment to the last.
- It is told once per (milestone, user) while it lasts: a changed overlap or a newer milestone version is
  stored, not sent again; it keeps its `conflict_id` until it is resolved.
- It is resolved, once, with why: the user disconnected; the milestone was unscheduled (or deleted); the
  user was unassigned; the milestone moved off the busy time; or (the milestone where it was) the busy
  time was moved or deleted.
- Only time whose busy periods are known counts (`Seen`): from a day back (busy periods are kept that
  far) to the end of the user's last busy rebuild window (`calsync.busy.covered_until`). A milestone that
  has ended is left as it is: its busy time is no longer kept, and it can no longer collide; so is a
  conflict of a milestone still running whose overlap lies wholly before that (a multi-day install).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from calsync.slots import all_day_period

Interval = tuple[datetime, datetime]
Why = Literal["busy_time_gone", "milestone_moved", "unassigned", "milestone_unscheduled", "disconnected"]
Standing = Literal["assigned", "unassigned", "unscheduled", "disconnected"]
State = Literal["detecting", "open", "resolving"]

_WHY_OF_STANDING: dict[str, Why] = {"unassigned": "unassigned", "unscheduled": "milestone_unscheduled",
                                    "disconnected": "disconnected"}


@dataclass(frozen=True)
class Assignment:
    """A scheduled milestone assigned to the user, as a UTC span, and its version."""

    milestone_id: str
    version: int
    start: datetime
    end: datetime

    @property
    def span(self) -> Interval:
        return self.start, self.end


@dataclass(frozen=True)
class Conflict:
    """What is stored of one (milestone, user) conflict.

    `state`: "detecting" from the moment it is recorded until its detection was sent, "open" after
    that, "resolving" from the moment its end is recorded until its resolution was sent (then it is
    deleted). A message is sent only after the state that asks for it was stored, and sent again (same
    message id) when a retry finds that state: nothing is lost, nothing is told twice in a new way."""

    org_id: str
    user_id: str
    milestone_id: str
    conflict_id: str
    state: State
    milestone_version: int
    span: Interval  # the milestone's span when last judged
    overlap: Interval
    detected_at: datetime
    why: Why | None = None


@dataclass(frozen=True)
class Verdict:
    action: Literal["none", "detect", "update", "resolve"]
    overlap: Interval | None = None
    why: Why | None = None


NOTHING = Verdict("none")


def span_of(start: str, end: str, all_day: bool, timezone: str) -> Interval:
    """A milestone's span in UTC: timed ones as sent; all-day ones from local midnight of the first day
    to local midnight after the last, in the milestone's own zone (one day at least)."""
    if all_day:
        return all_day_period(date.fromisoformat(start), date.fromisoformat(end), ZoneInfo(timezone))
    return _utc(start), _utc(end)


def _utc(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def overlap(span: Interval, busy: Iterable[Interval], seen: Interval) -> Interval | None:
    """The part of `span` the busy periods cover, within `seen` (where busy time is known): from the
    first covered moment to the last; None when nothing is covered."""
    low, high = max(span[0], seen[0]), min(span[1], seen[1])
    covered = [(max(s, low), min(e, high)) for s, e in busy]
    covered = [(s, e) for s, e in covered if e > s]
    if not covered:
        return None
    return min(s for s, _ in covered), max(e for _, e in covered)


def judge(known: Conflict | None, standing: Standing, assignment: Assignment | None, busy: Iterable[Interval],
          seen: Interval) -> Verdict:
    """What to do for one (milestone, user), given what is stored (`known`, open or None) and the truth
    now: how the user stands to the milestone, its span and version, and the user's busy periods."""
    now_overlap = None
    if standing == "assigned" and assignment is not None:
        now_overlap = overlap(assignment.span, busy, seen)
    if known is None:
        return Verdict("detect", now_overlap) if now_overlap is not None else NOTHING
    if now_overlap is not None:
        assert assignment is not None
        if (now_overlap, assignment.version, assignment.span) != (known.overlap, known.milestone_version, known.span):
            return Verdict("update", now_overlap)  # a changed overlap is not a new conflict
        return NOTHING
    why = _WHY_OF_STANDING.get(standing)
    if why is None:
        assert assignment is not None
        if assignment.span != known.span:
            why = "milestone_moved"
        elif known.overlap[1] <= seen[0]:
            return NOTHING  # its busy time is past and no longer kept: not gone, just forgotten
        else:
            why = "busy_time_gone"
    return Verdict("resolve", why=why)
