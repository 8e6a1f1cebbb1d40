"""The daily check's judgement (pure): what one full read of a user's SolarNexus events shows against
what we wrote (the refs). Used by the reconciler's visit and by a notification's read when that read
is the day's check as well (calsync.notifications): both read the calendar the same way and judge it
by the same rules.

- `check_window`: the read covers Cronofy's sync window, from the backfill's first day (30 days back)
  to 201 days ahead (Cronofy holds nothing further).
- `find_drift`: missing events (gone silently, or a tombstone older than our write: the provider lost
  it), moved or retitled ones are written again from the mirror; events of ours with no ref are
  orphans to delete. A change the user made after our last write is theirs, not drift
  (`changed_after_our_write`): it is reported to SolarNexus as a notification's would be.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from calsync.cronofy_event import CronofyEvent
from calsync.models import EventRef, utcnow
from calsync.sync import BACKFILL_DAYS

READ_DAYS_AHEAD = 201  # Cronofy's sync window: it holds nothing further ahead


def check_window(now: datetime) -> tuple[str, str]:
    """The full read's [first_day, end_day) (dates)."""
    return ((now - timedelta(days=BACKFILL_DAYS)).date().isoformat(),
            (now + timedelta(days=READ_DAYS_AHEAD)).date().isoformat())


# Cronofy answers a write with 202 and applies it a moment later: the event's `updated` is then that
# moment, not the time we recorded the write. A change stamped within this long after our write is
# taken for our write landing (the emulator lands writes a second later, and `updated` has whole
# seconds). Longer would take a user's quick move, whose notification was lost, for drift.
APPLY_LAG = timedelta(seconds=3)


def changed_after_our_write(event: CronofyEvent, ref: EventRef) -> bool:
    """Did the calendar change this event after we last wrote it? (Cronofy's `updated` vs our write,
    allowing APPLY_LAG for Cronofy to apply it.) Used by catch-up judgements only: a change a
    notification names is judged by its own read, whenever it happened."""
    updated = event.updated_at
    if updated is None or ref.updated_at is None:
        return True
    return updated > ref.updated_at + APPLY_LAG


# Cronofy answers writes with 202 and applies them afterwards: an event written moments ago can
# still be missing or show its previous times. Refs written within this long are not judged.
RECENT_WRITE = timedelta(minutes=2)


def _in_flight(ref: EventRef) -> bool:
    return ref.updated_at is not None and timedelta(0) <= utcnow() - ref.updated_at < RECENT_WRITE


def in_window(ref: EventRef, first_day: str, end_day: str) -> bool:
    """Does the event of this ref start inside the Read Events window [first_day, end_day)?"""
    return first_day <= ref.start[:10] < end_day


@dataclass
class Drift:
    """What one read of a user's SolarNexus events shows against the refs (pure: `find_drift`)."""

    rewrite: set[str] = field(default_factory=set)  # milestone ids to write again from the mirror
    orphans: list[tuple[str, str]] = field(default_factory=list)  # (calendar_id, event_id) to delete
    repairs: Counter = field(default_factory=Counter)


def _judge_tombstone(drift: Drift, event: CronofyEvent, ref: EventRef | None, seen: set[str]) -> None:
    """A deleted event of ours: lost (deleted before our last write, not by the user) means rewrite."""
    if ref is None or ref.calendar_id != event.calendar_id:
        return
    seen.add(ref.event_id)
    if ref.removed_by_user_version is None and not changed_after_our_write(event, ref) and not _in_flight(ref):
        drift.rewrite.add(ref.milestone_id)  # deleted before our last write: lost, not the user's
        drift.repairs["missing"] += 1


def _judge_live(drift: Drift, event: CronofyEvent, ref: EventRef) -> None:
    """A live event of ours: moved or retitled behind our back means rewrite."""
    if _in_flight(ref):
        return  # Cronofy may not have applied our latest write yet: not drift
    if event.times() not in {(ref.start, ref.end), (ref.user_moved_start, ref.user_moved_end)}:
        drift.rewrite.add(ref.milestone_id)
        drift.repairs["moved"] += 1
    elif ref.summary is not None and event.summary != ref.summary:
        drift.rewrite.add(ref.milestone_id)
        drift.repairs["content"] += 1


def find_drift(events: list[CronofyEvent], refs: dict[str, EventRef], calendar_id: str | None, first_day: str,
               end_day: str) -> Drift:
    """Compare our events on the calendar (Read Events over [first_day, end_day)) with the refs, keyed
    by event id: what to write again, what to delete."""
    drift = Drift()
    seen: set[str] = set()
    for event in events:
        assert event.event_id is not None
        ref = refs.get(event.event_id)
        if event.deleted:
            _judge_tombstone(drift, event, ref, seen)
        elif ref is None or ref.calendar_id != event.calendar_id or ref.removed_by_user_version is not None:
            drift.orphans.append((event.calendar_id or "", event.event_id))
        else:
            seen.add(event.event_id)
            _judge_live(drift, event, ref)
    for event_id, ref in refs.items():
        if (event_id not in seen and ref.removed_by_user_version is None and ref.calendar_id == calendar_id
                and in_window(ref, first_day, end_day) and not _in_flight(ref)):
            drift.rewrite.add(ref.milestone_id)
            drift.repairs["missing"] += 1
    return drift
