"""The sync rules: which calendar writes make every user's calendar equal the milestone mirror.

The mirror (newest version of each milestone) is the truth; a milestone message only updates the
mirror, and every push is a reconciliation of "what the mirror says" against "what we last wrote"
(event refs). That makes stale, repeated and reordered messages harmless, and lets backfill and
repair use the same code.

Races between writers (a milestone push and a backfill chunk writing the same event) are closed by
a re-check after each write: the writer reads the mirror again and, if it moved past the version it
wrote, writes again. The last write to land is always followed by such a check, so the calendar
ends at the newest version.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from calsync.clock import parse_utc
from calsync.cronofy import (
    BATCH_LIMIT,
    CronofyAuthError,
    CronofyError,
    CronofyRateLimited,
    InvalidGrant,
)
from calsync.cronofy_event import delete_entry, upsert_entry
from calsync.milestones import Milestone, calendar_event, content_hash
from calsync.models import Connection, ConnectionState, EventRef, iso, utcnow
from calsync.observability import logger, metrics
from calsync.ports import SyncStore, TokenKeeper, UserCalendar
from calsync.slots import LONGEST_ASSIGNMENT, all_day_period

BACKFILL_DAYS = 30
MAX_ROUNDS = 3
WRITABLE_STATES = {ConnectionState.CONNECTED, ConnectionState.SYNCING}


@dataclass
class Write:
    kind: Literal["upsert", "delete"]
    user_id: str
    milestone_id: str
    calendar_id: str
    event_id: str
    version: int
    ref: EventRef | None = None  # the ref to record after an upsert
    body: dict | None = None
    forget_ref: bool = True  # False for the delete half of a move to another calendar

    @property
    def old_half(self) -> bool:
        """The delete half of a move to another calendar (sent only once the new half landed)."""
        return self.kind == "delete" and not self.forget_ref

    def entry(self) -> dict:
        """This write as a /v1/batch entry."""
        if self.kind == "upsert":
            assert self.body is not None
            return upsert_entry(self.calendar_id, self.body)
        return delete_entry(self.calendar_id, self.event_id)


@dataclass
class Plan:
    writes: list[Write] = field(default_factory=list)
    ref_updates: list[EventRef] = field(default_factory=list)  # version bumps with unchanged content
    ref_deletes: list[tuple[str, str, int]] = field(default_factory=list)
    index_add: dict[str, dict[str, str]] = field(default_factory=dict)
    index_remove: dict[str, list[str]] = field(default_factory=dict)
    index_span: dict[str, timedelta] = field(default_factory=dict)  # how long each scheduled milestone runs
    index_users: dict[str, list[str]] = field(default_factory=dict)  # ... and whom it keeps busy


@dataclass
class SyncResult:
    failed: set[str] = field(default_factory=set)  # milestone ids with a write that did not happen
    errors: list[Exception] = field(default_factory=list)
    written: int = 0
    cronofy_batches: int = 0

    @property
    def retry_after(self) -> float | None:
        """How long to wait before retrying, when a failure was throttling."""
        waits = [e.retry_after or 1.0 for e in self.errors if isinstance(e, CronofyRateLimited)]
        return max(waits) if waits else None


PROFILE_DISCONNECTED = "profile_disconnected"
CALENDAR_NOT_WRITABLE = "calendar_not_writable"
WRITE_REFUSED = "write_refused"  # 403 on a calendar still listed as writable: the grant lacks a scope
FORBIDDEN = "forbidden"


def _why_forbidden(client: UserCalendar, calendar_id: str | None) -> str:
    """A 403 means the token lacks a scope (the reference) or, as a provider may answer, the calendar was
    made read-only or deleted. The account's calendar list tells them apart (one request, on this rare
    path only): a calendar no longer writable is chosen again; otherwise only reconnecting helps."""
    try:
        listed = {c.calendar_id: c for c in client.calendars()}
    except CronofyError:
        return CALENDAR_NOT_WRITABLE
    calendar = listed.get(calendar_id or "")
    return WRITE_REFUSED if calendar is not None and calendar.writable else CALENDAR_NOT_WRITABLE


def _judge(w: Write, status: int, ok: bool, calendar_id: str | None) -> str:
    """What one /v1/batch entry's answer means for its write.

    - "written"; "gone": a delete of an event (or a calendar) that is no longer there, or refused on a
      calendar the user has left (a move's old half: retrying cannot help, and it is not theirs now);
    - PROFILE_DISCONNECTED (423): the provider link is gone, so every write of this user will be
      refused: the connection goes to needs_reauth and its writes are not retried (the reconnect's
      backfill restores the calendar);
    - CALENDAR_NOT_WRITABLE (404 to an upsert: the calendar was deleted): the user is asked to choose
      a calendar again, whose backfill restores everything; FORBIDDEN (403): that, or needs_reauth
      when the calendar is still listed as writable (_why_forbidden);
    - "refused": anything else fails the write's milestone, which its queue retries.
    """
    if ok:
        return "written"
    if status == 423:
        return PROFILE_DISCONNECTED
    if w.calendar_id != calendar_id and w.kind == "delete" and status in (403, 404):
        return "gone"
    if w.kind == "delete" and status == 404:
        return "gone"
    if status == 403:
        return FORBIDDEN
    if status == 404 and w.kind == "upsert":
        return CALENDAR_NOT_WRITABLE
    return "refused"


def mirror_milestone(mirror: dict | None) -> Milestone | None:
    if not mirror or mirror.get("deleted") or not mirror.get("body"):
        return None
    return Milestone.model_validate(json.loads(mirror["body"]))


def _only_the_users_move(ref: EventRef, body: dict, start: str, end: str) -> bool:
    """The new version differs from what we pushed only by the times the user already gave the event
    on their calendar (the core platform applied their reschedule): writing it would be an echo."""
    if (start, end) != (ref.user_moved_start, ref.user_moved_end):
        return False
    before = dict(body)
    if isinstance(body["start"], dict):
        before["start"] = {**body["start"], "time": ref.start}
        before["end"] = {**body["end"], "time": ref.end}
    else:
        before["start"], before["end"] = ref.start, ref.end
    return content_hash(before) == ref.content_hash


def pushed_times(body: dict) -> tuple[str, str]:
    """The start and end as Cronofy stores them (and Read Events returns them) for an upsert body."""
    start, end = body["start"], body["end"]
    if isinstance(start, dict):
        return start["time"], end["time"]
    return start, end


def schedule_key(m: Milestone) -> str:
    return f"{iso(m.starts_at())}#{m.milestone_id}"


def assignment_span(m: Milestone) -> timedelta:
    """How long a scheduled milestone keeps its assignees busy (as crew availability reads it), at
    most LONGEST_ASSIGNMENT. The by_assignee index is by start: the scheduler looks back this far for
    ones still running."""
    assert m.start is not None and m.end is not None
    if m.all_day:
        first, last = date.fromisoformat(m.start), date.fromisoformat(m.end)
        if last - first > LONGEST_ASSIGNMENT:
            return LONGEST_ASSIGNMENT
        start, end = all_day_period(first, last, ZoneInfo(m.timezone))
        return min(end - start, LONGEST_ASSIGNMENT)
    return min(parse_utc(m.end) - parse_utc(m.start), LONGEST_ASSIGNMENT)


def _writable(conn: Connection | None, org_id: str | None) -> bool:
    """Can this user's calendar take writes of a milestone of `org_id` now?"""
    if conn is None or conn.state not in WRITABLE_STATES or conn.calendar_id is None:
        return False
    # never write one org's milestone on a calendar of another org's user
    return org_id is None or conn.org_id == org_id


def _plan_index(plan: Plan, milestone_id: str, m: Milestone | None, assignees: set[str],
                scheduled: dict[str, str]) -> None:
    """The by_assignee index follows the schedule for every assignee, connected or not."""
    wanted_index = {u: schedule_key(m) for u in assignees} if m else {}
    add = {u: k for u, k in wanted_index.items() if scheduled.get(u) != k}
    remove = [u for u in scheduled if u not in wanted_index]
    if m is not None and wanted_index:
        # Every version's length, not only when the index changes (the index is by start: an end moved
        # later changes nothing there), recorded before the index (a retry finds the index current).
        plan.index_span[milestone_id] = assignment_span(m)
        plan.index_users[milestone_id] = sorted(wanted_index)
    if add:
        plan.index_add[milestone_id] = add
    if remove:
        plan.index_remove[milestone_id] = remove


def _calendar_shows(ref: EventRef | None, digest: str, version: int, body: dict, start: str, end: str) -> bool:
    """The calendar already shows this version: what we pushed (unless the user moved it and SolarNexus
    has since published a newer version: SolarNexus wins, so write), or the user's own move that this
    version adopts."""
    if ref is None:
        return False
    pushed = ref.content_hash == digest and (ref.user_moved_start is None or ref.version >= version)
    return pushed or _only_the_users_move(ref, body, start, end)


def _plan_assignee(plan: Plan, milestone_id: str, m: Milestone, version: int, user_id: str, ref: EventRef | None,
                   conn: Connection, now: datetime, force: bool) -> None:
    """The event an assignee's calendar should show: written unless it already shows it."""
    assert conn.calendar_id is not None
    if ref and ref.removed_by_user_version is not None and ref.removed_by_user_version >= version:
        return  # the user deleted it on their calendar: back only when the milestone changes
    if ref is None and m.starts_at() < now - timedelta(days=BACKFILL_DAYS):
        return  # older than the window: never created (an existing event keeps following)
    body = calendar_event(m)
    digest = content_hash(body)
    start, end = pushed_times(body)
    new_ref = EventRef(
        milestone_id=milestone_id, user_id=user_id, calendar_id=conn.calendar_id,
        event_id=body["event_id"], version=version, content_hash=digest, start=start, end=end,
        all_day=m.all_day, timezone=m.timezone, summary=body["summary"], updated_at=now,
    )
    if (ref is not None and ref.calendar_id == conn.calendar_id and ref.removed_by_user_version is None
            and not force and _calendar_shows(ref, digest, version, body, start, end)):
        if ref.version < version or ref.content_hash != digest:
            # Nothing is written: the ref keeps the time of our last write, which a user's change read
            # later is compared with (notifications._before_our_last_write, drift's writes in flight).
            plan.ref_updates.append(new_ref.model_copy(update={"updated_at": ref.updated_at}))
        return
    plan.writes.append(Write("upsert", user_id, milestone_id, conn.calendar_id, body["event_id"], version,
                             ref=new_ref, body=body))
    if ref is not None and ref.calendar_id != conn.calendar_id and ref.removed_by_user_version is None:
        plan.writes.append(Write("delete", user_id, milestone_id, ref.calendar_id, ref.event_id, version,
                                 forget_ref=False))


def _plan_removal(plan: Plan, milestone_id: str, user_id: str, ref: EventRef, version: int) -> None:
    """The event of a user the milestone no longer belongs on."""
    if ref.removed_by_user_version is not None:
        plan.ref_deletes.append((milestone_id, user_id, version))  # already gone from the calendar
    else:
        plan.writes.append(Write("delete", user_id, milestone_id, ref.calendar_id, ref.event_id, version))


def plan_milestone(
    plan: Plan,
    milestone_id: str,
    mirror: dict | None,
    scheduled: dict[str, str],
    refs: dict[str, EventRef],
    connections: dict[str, Connection],
    now: datetime,
    only_user: str | None = None,
    force: bool = False,
) -> None:
    """Add to `plan` what it takes for this milestone's calendars to match its mirror."""
    m = mirror_milestone(mirror)
    version = int(mirror["version"]) if mirror else 0
    assignees = set(m.assignee_user_ids) if m and m.on_calendar else set()
    _plan_index(plan, milestone_id, m, assignees, scheduled)
    users = assignees | set(refs)
    if only_user is not None:
        users &= {only_user}
    org_id = mirror.get("org_id") if mirror else None
    for user_id in sorted(users):
        conn = connections.get(user_id)
        if conn is None or not _writable(conn, org_id):
            continue  # nothing can be written now; connect/backfill or cleanup takes care of it
        ref = refs.get(user_id)
        if user_id in assignees and m is not None:
            _plan_assignee(plan, milestone_id, m, version, user_id, ref, conn, now, force)
        elif ref is not None:
            _plan_removal(plan, milestone_id, user_id, ref, version)


class SyncEngine:
    def __init__(self, store: SyncStore, tokens: TokenKeeper):
        self.store = store
        self.tokens = tokens

    def sync(self, milestone_ids: list[str], only_user: str | None = None, now: datetime | None = None) -> SyncResult:
        result = SyncResult()
        pending = list(dict.fromkeys(milestone_ids))
        for round_number in range(MAX_ROUNDS):
            if not pending:
                break
            plan = Plan()
            if only_user:
                partitions = self.store.partitions_for_user(pending, only_user)
            else:
                partitions = {mid: self.store.milestone_partition(mid) for mid in pending}
            users = {only_user} if only_user else set()
            if not only_user:
                for mirror, _, refs in partitions.values():
                    m = mirror_milestone(mirror)
                    users |= set(refs) | (set(m.assignee_user_ids) if m else set())
            connections = self.store.connections(sorted(users)) if users else {}
            for mid, (mirror, scheduled, refs) in partitions.items():
                # After the first round, our own write may have landed over a newer one: rewrite even
                # where the ref already shows the newest content.
                plan_milestone(plan, mid, mirror, scheduled, refs, connections, now or utcnow(), only_user,
                               force=round_number > 0)
            self._apply_bookkeeping(plan)
            written = self._execute(plan.writes, connections, result)
            # Re-check: did the mirror move past what we just wrote?
            if not written:
                break
            mirrors = self.store.mirrors(list(written))
            pending = [mid for mid, v in written.items() if int(mirrors.get(mid, {}).get("version", -1)) > v]
            pending += [mid for mid in self._written_to_a_calendar_left(plan.writes, connections, written)
                        if mid not in pending]
        return result

    def _written_to_a_calendar_left(self, writes: list[Write], connections: dict[str, Connection],
                                    written: dict[str, int]) -> list[str]:
        """Milestones just written on a calendar its user switched away from while we wrote (the switch
        committed after we read the connection; its backfill may already have moved the event, and our ref
        now names the old calendar): the next round moves them (upsert on the new, delete on the old). The
        20,000-user rough run left one such event behind. One BatchGetItem of the users written."""
        users = sorted({w.user_id for w in writes if w.kind == "upsert" and w.milestone_id in written})
        if not users:
            return []
        now = self.store.connections(users)
        left = {u for u in users if (c := now.get(u)) is not None and connections[u].calendar_id != c.calendar_id}
        return list(dict.fromkeys(w.milestone_id for w in writes if w.user_id in left and w.milestone_id in written))

    def _apply_bookkeeping(self, plan: Plan) -> None:
        for mid, span in plan.index_span.items():
            self.store.note_assignment_span(plan.index_users[mid], span)
        for mid, add in plan.index_add.items():
            self.store.set_schedule_index(mid, add, [])
        for mid, remove in plan.index_remove.items():
            self.store.set_schedule_index(mid, {}, remove)
        for ref in plan.ref_updates:
            self.store.put_ref(ref)
        for mid, user_id, version in plan.ref_deletes:
            self.store.delete_ref(mid, user_id, version)

    def _execute(self, writes: list[Write], connections: dict[str, Connection], result: SyncResult) -> dict[str, int]:
        """Send the writes, one user's at a time through /v1/batch (≤ 50 a request); record refs."""
        written: dict[str, int] = {}
        by_user: dict[str, list[Write]] = defaultdict(list)
        for w in writes:
            by_user[w.user_id].append(w)
        for user_id, user_writes in by_user.items():
            conn = connections[user_id]
            # A move's old half (the delete on the calendar the user left) goes only after its new half
            # landed: a new calendar that refuses writes must not cost the events on the old one.
            first = [w for w in user_writes if not w.old_half]
            try:
                client = self.tokens.user_client(conn)
                broken: str | None = None
                for i in range(0, len(first), BATCH_LIMIT):
                    broken = self._send(client, conn, first[i:i + BATCH_LIMIT], result, written) or broken
                then = [w for w in user_writes if w.old_half and written.get(w.milestone_id, -1) >= w.version]
                for i in range(0, len(then), BATCH_LIMIT):
                    broken = self._send(client, conn, then[i:i + BATCH_LIMIT], result, written) or broken
                self._take_down(client, conn, broken)
            except (InvalidGrant, CronofyAuthError):
                # Nothing more can be written for this user until they reconnect; the reconnect's
                # backfill restores their calendar, so these writes are not retried.
                self.tokens.mark_needs_reauth(conn, "authorization_revoked")
            except CronofyError as error:
                result.errors.append(error)
                result.failed.update(w.milestone_id for w in user_writes if w.milestone_id not in written)
        return written

    def _send(self, client: UserCalendar, conn: Connection, chunk: list[Write], result: SyncResult,
              written: dict[str, int]) -> str | None:
        """One /v1/batch: record what landed, fail what was refused; what broke the connection, if anything."""
        outcomes = client.batch([w.entry() for w in chunk])
        # Our record of a write is when Cronofy accepted it, not when it was planned: Cronofy stamps the
        # event's `updated` when it applies the write, after it received it, and on a loaded machine (or
        # a slow network) the trip from plan to Cronofy can take longer than drift.APPLY_LAG, which made
        # the write look like a change of the user's made after it.
        accepted_at = utcnow()
        result.cronofy_batches += 1
        landed, broken = [], None
        for w, outcome in zip(chunk, outcomes, strict=True):
            verdict = _judge(w, outcome.status, outcome.ok, conn.calendar_id)
            if verdict == "written":
                written[w.milestone_id] = max(written.get(w.milestone_id, -1), w.version)
                result.written += 1
            if verdict in ("written", "gone"):
                landed.append(w)
            elif verdict == "refused":
                logger.warning("calendar write refused", extra={
                    "user_id": conn.user_id, "milestone_id": w.milestone_id, "status": outcome.status,
                    "errors": outcome.data})
                result.failed.add(w.milestone_id)
            elif broken is None or verdict == PROFILE_DISCONNECTED:
                broken = verdict
        self._record(landed, accepted_at)
        metrics.add_metric(name="CalendarWrites", unit="Count", value=len(landed))
        return broken

    def _take_down(self, client: UserCalendar, conn: Connection, broken: str | None) -> None:
        """A calendar that refuses every write: ask for a calendar again, or for a reconnect."""
        if broken == FORBIDDEN:
            broken = _why_forbidden(client, conn.calendar_id)
        if broken in (PROFILE_DISCONNECTED, WRITE_REFUSED):
            self.tokens.mark_needs_reauth(conn, broken)
        elif broken == CALENDAR_NOT_WRITABLE:
            self.tokens.mark_calendar_unwritable(conn, CALENDAR_NOT_WRITABLE)

    def _record(self, landed: list[Write], accepted_at: datetime) -> None:
        """Remember what reached the calendar, stamped with when Cronofy accepted it (refs never move back
        to an older version)."""
        self.store.put_refs([w.ref.model_copy(update={"updated_at": max(w.ref.updated_at or accepted_at, accepted_at)})
                             for w in landed if w.kind == "upsert" and w.ref is not None])
        for w in landed:
            if w.kind == "delete" and w.forget_ref:
                self.store.delete_ref(w.milestone_id, w.user_id, w.version)
