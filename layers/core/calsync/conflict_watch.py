"""Conflict alerts, applied (issue 23): loads what the rule (`calsync.conflicts`, pure) judges, stores the
outcome (`ConflictRepository`) and sends `calendar.conflict_detected` / `calendar.conflict_resolved` to
the core platform's CalendarChangesQueue.

Called wherever busy periods or assignments change, always after the change is stored, and always on
what is stored (never on the message that caused it), so duplicates and reordering judge the same truth
and change nothing the second time:
- `user_changed`: a user's busy periods changed (a notification's read, the day's check, the backfill's
  rebuild): every milestone assigned to them in the busy window, and every conflict they have open;
- `milestones_changed`: the milestone mirror moved (milestone push), before the calendar writes: its
  assignees, and whoever its schedule index or event refs still name (unassigned users);
- `resolve_all`: the user disconnected or was deactivated (connection cleanup).

No Cronofy request of its own: busy periods are read from DynamoDB (`Busy.periods`), which the reads made
anyway keep. DynamoDB per call of `user_changed`: 1 GetItem-sized BatchGetItem (longest assignment), 1
query of GSI by_assignee, 1 query of the user's conflicts, ceil(m / 100) BatchGetItems of mirrors for m
milestones, 1 BatchGetItem of busy weeks; writes only when a conflict begins, changes or ends. Per
milestone in `milestones_changed`: 1 query of its partition, 1 BatchGetItem each of conflicts, connections
and busy weeks of its users.

Each message is sent after the state asking for it is stored and before the next state: a crash between
the two sends it again on the next visit with the same message id (derived from the conflict id).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta

from calsync import freshness
from calsync.busy import DAYS_BACK, Busy, covered_until
from calsync.conflicts import Assignment, Conflict, Interval, Standing, Verdict, Why, judge, span_of
from calsync.messages import ConflictDetected, ConflictResolved
from calsync.messages import Interval as WireInterval
from calsync.models import Connection, ConnectionState, iso, utcnow
from calsync.observability import logger, metrics
from calsync.ports import ConflictStore, EventPublisher

# A user with a connection in one of these states is "connected" for conflicts: their busy periods are
# kept (a needs_reauth user's as they were last read). Disconnecting ends their conflicts.
ACTIVE = {ConnectionState.CONNECTED, ConnectionState.SYNCING, ConnectionState.NEEDS_REAUTH,
          ConnectionState.PENDING_CALENDAR}
_MESSAGE_IDS = uuid.UUID("0f6f5a52-2c39-4c1e-9a57-3c1d1b7e8a23")  # namespace of conflict message ids


def _wire(interval: Interval) -> WireInterval:
    return WireInterval(start=iso(interval[0]), end=iso(interval[1]))


def _send_detected(publisher: EventPublisher, c: Conflict) -> None:
    publisher.calendar_change(ConflictDetected(
        message_id=str(uuid.uuid5(_MESSAGE_IDS, f"{c.conflict_id}#detected")), occurred_at=iso(c.detected_at),
        org_id=c.org_id, user_id=c.user_id, milestone_id=c.milestone_id, milestone_version=c.milestone_version,
        conflict_id=c.conflict_id, overlap=_wire(c.overlap)))
    metrics.add_metric(name="ConflictsDetected", unit="Count", value=1)
    logger.info("conflict detected", extra={"user_id": c.user_id, "milestone_id": c.milestone_id,
                                            "conflict_id": c.conflict_id})


def _send_resolved(publisher: EventPublisher, c: Conflict, now: datetime) -> None:
    assert c.why is not None
    publisher.calendar_change(ConflictResolved(
        message_id=str(uuid.uuid5(_MESSAGE_IDS, f"{c.conflict_id}#resolved")), occurred_at=iso(now),
        org_id=c.org_id, user_id=c.user_id, milestone_id=c.milestone_id, conflict_id=c.conflict_id, why=c.why))
    metrics.add_metric(name="ConflictsResolved", unit="Count", value=1)
    logger.info("conflict resolved", extra={"user_id": c.user_id, "milestone_id": c.milestone_id,
                                            "conflict_id": c.conflict_id, "why": c.why})


def _finish(store: ConflictStore, publisher: EventPublisher, known: Conflict | None, now: datetime,
            counts: Counter) -> Conflict | None:
    """Send what an earlier visit stored but may not have sent; the conflict still open after it, if any."""
    if known is not None and known.state == "resolving":
        _send_resolved(publisher, known, now)
        counts["conflicts_resolved"] += 1
        store.delete_conflict(known)
        return None
    if known is not None and known.state == "detecting":
        _send_detected(publisher, known)
        counts["conflicts_detected"] += 1
        opened = replace(known, state="open")
        return opened if store.replace_conflict(opened, "detecting") else None
    return known


def _resolve(store: ConflictStore, publisher: EventPublisher, known: Conflict, why: Why, now: datetime,
             counts: Counter) -> None:
    ending = replace(known, state="resolving", why=why)
    if store.replace_conflict(ending, "open"):  # else another writer changed it first: theirs to tell
        _send_resolved(publisher, ending, now)
        counts["conflicts_resolved"] += 1
        store.delete_conflict(ending)


def resolve_all(store: ConflictStore, publisher: EventPublisher, org_id: str, user_id: str,
                why: Why = "disconnected", now: datetime | None = None) -> Counter:
    """End every conflict of a user who leaves (disconnect, deactivation): one query, then per conflict
    its resolution (a detection not yet sent goes first, so every resolution follows its detection)."""
    now = now or utcnow()
    counts: Counter = Counter()
    for known in store.conflicts_of_user(org_id, user_id).values():
        still_open = _finish(store, publisher, known, now, counts)
        if still_open is not None:
            _resolve(store, publisher, still_open, why, now, counts)
    return counts


def _milestone(mirror: dict | None, org_id: str) -> dict | None:
    """The mirrored milestone of this org (its body as sent), None when deleted or another org's."""
    if not mirror or mirror.get("deleted") or not mirror.get("body") or mirror.get("org_id") != org_id:
        return None
    body = json.loads(mirror["body"])
    return body if isinstance(body, dict) else None


def standing_of(mirror: dict | None, org_id: str, user_id: str,
                conn: Connection | None) -> tuple[Standing, Assignment | None]:
    """How a user stands to a mirrored milestone of `org_id`, and its span when it is assigned to them."""
    if conn is None or conn.org_id != org_id or conn.state not in ACTIVE:
        return "disconnected", None
    m = _milestone(mirror, org_id)
    if m is None or m.get("status") != "scheduled" or not m.get("start"):
        return "unscheduled", None
    if user_id not in m.get("assignee_user_ids", ()):
        return "unassigned", None
    assert mirror is not None
    start, end = span_of(m["start"], m["end"], bool(m.get("all_day")), m["timezone"])
    return "assigned", Assignment(m["milestone_id"], int(mirror["version"]), start, end)


def seen_by(conn: Connection | None, now: datetime) -> Interval:
    """Where a user's busy time is known: a day back (busy periods are kept that far) to the end of the
    window of their last busy rebuild."""
    return now - timedelta(days=DAYS_BACK), covered_until(conn, now)


class ConflictWatch:
    def __init__(self, store: ConflictStore, busy: Busy, publisher: EventPublisher):
        self.store = store
        self.busy = busy
        self.publisher = publisher

    # ---- entry points --------------------------------------------------------------------------

    def user_changed(self, conn: Connection, now: datetime | None = None) -> Counter:
        """The user's busy periods changed: judge every milestone assigned to them in the busy window, and
        every conflict of theirs still stored."""
        now = now or utcnow()
        org_id, user_id = conn.org_id, conn.user_id
        seen = seen_by(conn, now)
        lookback = self.store.longest_assignments([user_id])[user_id]
        assigned = self.store.assigned_milestone_ids(user_id, iso(seen[0] - lookback), iso(seen[1]))
        known = self.store.conflicts_of_user(org_id, user_id)
        wanted = list(dict.fromkeys([*assigned, *known]))
        counts: Counter = Counter()
        if not wanted:
            return counts
        mirrors = self.store.mirrors(wanted)
        stored = self.busy.periods([user_id], seen[0], seen[1], {user_id: freshness.user_zone(conn)}).get(user_id)
        busy = stored.blocks if stored is not None and stored.org_id == org_id else []
        for milestone_id in wanted:
            standing, assignment = standing_of(mirrors.get(milestone_id), org_id, user_id, conn)
            self._settle(org_id, user_id, milestone_id, known.get(milestone_id), standing, assignment, busy, seen,
                         now, counts)
        return counts

    def milestones_changed(self, milestone_ids: list[str], now: datetime | None = None) -> Counter:
        """The mirror of these milestones moved: judge each for its assignees and for whoever its schedule
        index or event refs name (the users it was assigned to before)."""
        now = now or utcnow()
        counts: Counter = Counter()
        for milestone_id in dict.fromkeys(milestone_ids):
            mirror, scheduled, refs = self.store.milestone_partition(milestone_id)
            if mirror is None:
                continue
            org_id = str(mirror.get("org_id"))
            m = _milestone(mirror, org_id)
            users = sorted(set(scheduled) | set(refs) | set(m.get("assignee_user_ids", ()) if m else ()))
            if not users:
                continue
            known = self.store.conflicts_of_milestone(org_id, milestone_id, users)
            conns = self.store.connections(users)
            judged = {u: standing_of(mirror, org_id, u, conns.get(u)) for u in users}
            busy = self._busy_during(judged, conns, org_id)
            for user_id, (standing, assignment) in judged.items():
                self._settle(org_id, user_id, milestone_id, known.get(user_id), standing, assignment,
                             busy.get(user_id, []), seen_by(conns.get(user_id), now), now, counts)
        return counts

    # ---- inside --------------------------------------------------------------------------------

    def _busy_during(self, judged: dict[str, tuple[Standing, Assignment | None]], conns: dict[str, Connection],
                     org_id: str) -> dict[str, list[Interval]]:
        """The busy periods of the users a milestone is assigned to, over its span (one BatchGetItem)."""
        spans = [a.span for standing, a in judged.values() if standing == "assigned" and a is not None]
        users = [u for u, (standing, _) in judged.items() if standing == "assigned"]
        if not spans:
            return {}
        zones = {u: freshness.user_zone(conns.get(u)) for u in users}
        found = self.busy.periods(users, min(s for s, _ in spans), max(e for _, e in spans), zones)
        return {u: b.blocks for u, b in found.items() if b.org_id == org_id}

    def _settle(self, org_id: str, user_id: str, milestone_id: str, known: Conflict | None, standing: Standing,
                assignment: Assignment | None, busy: list[Interval], seen: Interval, now: datetime,
                counts: Counter) -> None:
        """Judge one (milestone, user) and carry the verdict out."""
        end = assignment.end if assignment is not None else known.span[1] if known is not None else None
        if standing != "disconnected" and end is not None and end <= now:
            return  # the milestone is over: its busy time is no longer kept; its conflict is left to expire
        known = _finish(self.store, self.publisher, known, now, counts)
        verdict = judge(known, standing, assignment, busy, seen)
        if verdict.action == "detect":
            assert assignment is not None and verdict.overlap is not None
            self._detect(org_id, user_id, assignment, verdict.overlap, now, counts)
        elif verdict.action == "update":
            assert known is not None and assignment is not None and verdict.overlap is not None
            self.store.replace_conflict(replace(known, overlap=verdict.overlap, span=assignment.span,
                                                milestone_version=assignment.version), "open")
        elif verdict.action == "resolve":
            assert known is not None and verdict.why is not None
            _resolve(self.store, self.publisher, known, verdict.why, now, counts)

    def _detect(self, org_id: str, user_id: str, assignment: Assignment, overlap: Interval, now: datetime,
                counts: Counter) -> None:
        new = Conflict(org_id=org_id, user_id=user_id, milestone_id=assignment.milestone_id,
                       conflict_id=f"cfl_{uuid.uuid4().hex}", state="detecting",
                       milestone_version=assignment.version, span=assignment.span, overlap=overlap,
                       detected_at=now.replace(microsecond=0))
        if not self.store.add_conflict(new):
            return  # another writer recorded it first: theirs to tell
        _finish(self.store, self.publisher, new, now, counts)


__all__ = ["ACTIVE", "ConflictWatch", "Verdict", "resolve_all", "seen_by", "standing_of"]
