"""What a Cronofy notification means for SolarNexus (ARCHITECTURE §4, §6).

`change`: read the user's events changed since `changes_since` (all pages, with managed, deleted and
moved events). A SolarNexus event the user moved becomes `milestone.rescheduled_on_calendar` (based
on the version we last pushed); one the user deleted becomes `milestone.removed_on_calendar` and is
not re-created until the milestone changes. The echo of our own writes is recognised by comparing
with what we pushed (and with the mirror's newest times) and is never a reschedule. Changes to the
user's other events refresh their busy blocks.

The day's check rides on a notification's read when it costs no more (`Connection.check_rides_on_read`):
instead of the changed events, that one read takes every event in Cronofy's window, which shows the
same changes, is the drift check the reconciler would otherwise make with a request (and often a token)
of its own, and rebuilds the busy periods (`check`).

Conflict rule: the core platform applies a calendar reschedule only while its milestone version
still equals `based_on_version`; otherwise SolarNexus wins and its next upsert puts the calendar
back to SolarNexus's time.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from calsync.busy import Busy
from calsync.clock import parse_utc
from calsync.conflict_watch import ConflictWatch
from calsync.cronofy import BATCH_LIMIT, CronofyAuthError, InvalidGrant
from calsync.cronofy_event import CronofyEvent, cronofy_time, delete_entry, events_of
from calsync.drift import changed_after_our_write, check_window, find_drift
from calsync.messages import MilestoneRemovedOnCalendar, MilestoneRescheduledOnCalendar
from calsync.milestones import calendar_event, in_accepted_years, milestone_id_from_event_id
from calsync.models import Connection, ConnectionState, EventRef, iso, utcnow
from calsync.observability import logger, metrics
from calsync.ports import EventPublisher, SyncStore, TokenKeeper, UserCalendar
from calsync.sync import BACKFILL_DAYS, WRITABLE_STATES, SyncEngine, mirror_milestone, pushed_times

__all__ = ["NotificationProcessor", "changed_after_our_write"]


def _before_our_last_write(event: CronofyEvent, ref: EventRef) -> bool:
    """Did the calendar's change happen before our latest write of this event? Cronofy answers a
    write with 202 and applies it later, so a read can still show a user's move that our newer write
    (already sent) is about to replace: SolarNexus wins that race, as if the write had landed first.
    Cronofy's `updated` has whole seconds; a change in the same second as our write is reported."""
    updated = event.updated_at
    if updated is None or ref.updated_at is None:
        return False
    return updated < ref.updated_at.replace(microsecond=0)


def _what_the_user_did(conn: Connection, ref: EventRef, event: CronofyEvent) -> dict:
    """The fields every calendar-side change message shares. Its id is derived from the change itself
    (the event, its version, its new times and Cronofy's `updated`), so the retry of a notification
    whose message was sent but not recorded sends the same id: a duplicate the core platform can drop,
    while a later change of the same event gets a new one."""
    change = "|".join(str(part) for part in (conn.user_id, ref.milestone_id, ref.version, event.deleted,
                                             *(() if event.deleted else event.times()), event.updated_at))
    # Without Cronofy's `updated` two changes to the same times (there and back, and there again) would
    # share an id: then every message gets its own.
    message_id = uuid.uuid5(_CHANGE_IDS, change) if event.updated_at is not None else uuid.uuid4()
    fields: dict = {"message_id": str(message_id), "org_id": conn.org_id,
                    "milestone_id": ref.milestone_id, "user_id": conn.user_id, "based_on_version": ref.version}
    if event.updated_at is not None:
        fields["occurred_at"] = iso(event.updated_at)
    return fields


_CHANGE_IDS = uuid.UUID("5b0e4c1e-8f5d-4d36-9d0e-2f4b8a7c6e11")  # namespace of calendar-side change ids


def checked(at: datetime, client: UserCalendar, own_events: bool) -> dict:
    """What a full check records on the connection: when, and (with own events) when the busy periods
    were rebuilt and how many pages that read took (`Connection.check_rides_on_read` uses it)."""
    update: dict = {"last_checked_at": at}
    if own_events:
        update["busy_rebuilt_at"] = at
        update["full_read_pages"] = client.pages_read
    return update


EVERYTHING = datetime.min.replace(tzinfo=UTC)  # a notification without `changes_since`: all changed


def _changed_since(event: CronofyEvent, since: datetime) -> bool:
    """Would a read with `last_modified=since` return this event?"""
    return event.updated_at is None or event.updated_at >= since.replace(microsecond=0)


def _earliest(values: list[str | None]) -> str | None:
    """The earliest `changes_since` (None, a notification without one, means read everything)."""
    if not values or any(v is None for v in values):
        return None
    return min(values, key=lambda v: parse_utc(v))  # type: ignore[arg-type]


class NotificationProcessor:
    def __init__(self, store: SyncStore, tokens: TokenKeeper, publisher: EventPublisher, busy: Busy,
                 engine: SyncEngine | None = None, conflicts: ConflictWatch | None = None):
        self.store = store
        self.conflicts = conflicts  # conflict alerts, judged wherever the busy periods changed
        self.tokens = tokens
        self.publisher = publisher
        self.busy = busy
        self.engine = engine  # rewrites drift found by a full check (without one, reads stay incremental)

    def process(self, notification: dict) -> dict:
        """One notification (see `process_user` for several of one user)."""
        return self.process_user(notification["user_id"], [notification])

    def process_user(self, user_id: str, notifications: list[dict], received_at: datetime | None = None) -> dict:
        """Every notification of one user in a batch, with one Read Events between them.

        `received_at` is when the newest of them was queued by the webhook intake: if the user's changes
        were already read after that (another batch, or a retry of Cronofy's), there is nothing new to
        read and no Cronofy request is made."""
        conn = self.store.get_connection(user_id)
        mine = [n for n in notifications if conn is not None and conn.channel_id == n.get("channel_id")]
        if conn is None or not mine:
            return {"outcome": "no_connection"}
        kinds = {n.get("notification_type") for n in mine}
        if "profile_disconnected" in kinds and (done := self._on_profile_disconnected(conn, kinds)):
            return done
        if conn.state not in WRITABLE_STATES:
            return {"outcome": f"skipped_{conn.state.value}"}
        changes = [n.get("changes_since") for n in mine if n.get("notification_type") == "change"]
        initial_sync = "profile_initial_sync_completed" in kinds
        if (initial_sync and received_at is not None and conn.busy_rebuilt_at is not None
                and conn.busy_rebuilt_at > received_at):
            initial_sync = False  # the busy periods were rebuilt (backfill end) after the sync completed
        if not changes and not initial_sync:
            return {"outcome": "ignored"}
        if (changes and not initial_sync and received_at is not None and conn.changes_read_at is not None
                and conn.changes_read_at > received_at):
            self._seen(conn, None)
            return {"outcome": "already_read", "coalesced": len(mine)}
        read_at = utcnow()
        full = bool(changes) and self.engine is not None and conn.check_rides_on_read(read_at)
        since = _earliest(changes)  # (None: the notification asks for everything)
        update: dict = {}
        try:
            client = self.tokens.user_client(conn)
            result: dict = {"outcome": "processed", "coalesced": len(mine)}
            if full:
                result.update(self.check(conn, client, read_at, own_events=True,
                                         notified_since=parse_utc(since) if since else EVERYTHING))
                update = checked(read_at, client, own_events=True)
            elif changes:
                result.update(self._change(conn, client, since))
            if initial_sync and not full:
                result["busy_periods"] = self.busy.rebuild(conn, client)
                update["busy_rebuilt_at"] = read_at
        except (InvalidGrant, CronofyAuthError):
            self.tokens.mark_needs_reauth(conn, "authorization_revoked")
            return {"outcome": "needs_reauth"}
        if self.conflicts is not None and not full and (result.get("busy_weeks_changed") or "busy_periods" in result):
            # Judged before the read is recorded: a failure here retries the notification, which reads again.
            result.update(self.conflicts.user_changed(conn.model_copy(update=update), read_at))
        self._seen(conn, read_at if changes else None, update)
        return result

    def _on_profile_disconnected(self, conn: Connection, kinds: set) -> dict | None:
        """The outcome when a `profile_disconnected` push ends the work (confirmed: needs_reauth; or it was
        the only kind), else None with it taken out of `kinds` (the other notifications go on)."""
        broken = self._profile_disconnected(conn)
        if broken is not None:
            self.tokens.mark_needs_reauth(conn, broken)
            return {"outcome": "needs_reauth"}
        kinds.discard("profile_disconnected")
        return None if kinds else {"outcome": "profile_connected"}

    def _profile_disconnected(self, conn: Connection) -> str | None:
        """Why the connection needs re-authorization after a `profile_disconnected` push, or None when
        Cronofy says its profile is connected. The push carries no time or nonce (a signed one captured
        earlier replays as genuine, e.g. after the user relinked), so it is only a hint: one userinfo
        request confirms the profile's state before a working connection is taken down."""
        if conn.state in (ConnectionState.NEEDS_REAUTH, ConnectionState.DISCONNECTING):
            return "profile_disconnected"  # nothing working to protect (mark_needs_reauth leaves these as they are)
        try:
            info = self.tokens.user_client(conn).userinfo()
        except (InvalidGrant, CronofyAuthError):
            return "authorization_revoked"
        profiles = [p for p in (info.get("cronofy.data") or {}).get("profiles") or [] if isinstance(p, dict)]
        mine = [p for p in profiles if conn.profile_id is None or p.get("profile_id") == conn.profile_id]
        if not mine or any(p.get("profile_connected") is False for p in mine):
            return "profile_disconnected"
        logger.info("profile_disconnected push, but the profile is connected: ignored", extra={"user_id": conn.user_id})
        metrics.add_metric(name="StaleProfileDisconnected", unit="Count", value=1)
        return None

    def _seen(self, conn: Connection, read_at: datetime | None, update: dict | None = None) -> None:
        """The channel works (a notification came through it); changes were read through `read_at`;
        `update` holds what a full check or a busy rebuild recorded."""
        now = utcnow()
        update = {**(update or {}), "channel_seen_at": now}
        if read_at is not None and (conn.changes_read_at is None or read_at > conn.changes_read_at):
            update["changes_read_at"] = read_at
        self.store.update_connection(conn.user_id, lambda c: c.model_copy(update=update))

    # ---- the full check (the reconciler's visit, or a notification's read that is the day's check) ----

    def check(self, conn: Connection, client: UserCalendar, now: datetime, own_events: bool,
              notified_since: datetime | None = None) -> Counter:
        """One read of the calendar over Cronofy's window (with the user's own events when `own_events`):
        the catch-up of missed notifications, then drift repair; with own events, the busy periods are
        rebuilt from the same read. `notified_since`: the read is a change notification's, for changes
        since this time: the events changed since then are judged as that notification's read would judge
        them, the older ones (all of them in a visit's read) as a catch-up."""
        if self.engine is None:
            raise RuntimeError("a full check needs the sync engine")
        first_day, end_day = check_window(now)
        # include_moved: an event of ours the user moved out of the window shows (a move, not a loss)
        params: dict = {"include_managed": True, "include_deleted": True, "include_moved": True,
                        "from": first_day, "to": end_day}
        if not own_events:
            params["only_managed"] = True
        events = list(events_of(client.read_events(**params)))
        ours = [e for e in events if e.solarnexus]
        repairs: Counter = Counter()
        repairs["reported"] += sum(
            self._solarnexus_event(conn, e, catching_up=notified_since is None
                                   or not _changed_since(e, notified_since))
            for e in ours)
        refs = {r.event_id: r for r in self.store.refs_of_user(conn.user_id)}  # after the catch-up's records
        drift = find_drift(ours, refs, conn.calendar_id, first_day, end_day)
        repairs.update(drift.repairs)
        scheduled = set(self.store.scheduled_for_user(conn.user_id, iso(now - timedelta(days=BACKFILL_DAYS))))
        never_pushed = scheduled - {r.milestone_id for r in refs.values()}
        # Our events on the calendar whose milestone no longer names the user here (unassigned or unscheduled
        # while the user could not be written to, e.g. in needs_reauth): the sync decides, from the mirror,
        # whether they go (the rest of the calendar matched its refs; only the mirror knows they are stale).
        shown = {e.event_id: refs[e.event_id] for e in ours if not e.deleted and e.event_id in refs}
        unlisted = {r.milestone_id for r in shown.values()} - scheduled
        # ... and those still listed whose milestone changed meanwhile (rescheduled while the user was in
        # needs_reauth, and no relink backfill since): the ref's version is behind the mirror's. One
        # BatchGetItem per 100 events shown; only those behind are synced (no Cronofy request otherwise).
        behind = self._behind_their_mirror([r for r in shown.values() if r.milestone_id not in unlisted])
        if drift.rewrite:
            self._forget(conn.user_id, drift.rewrite)
        if drift.rewrite or never_pushed or unlisted or behind:
            self.engine.sync(sorted(drift.rewrite | never_pushed | unlisted | behind), only_user=conn.user_id)
        repairs["never_pushed"] += len(never_pushed)
        repairs["unlisted"] += len(unlisted)
        repairs["behind"] += len(behind)
        for i in range(0, len(drift.orphans), BATCH_LIMIT):
            client.batch([delete_entry(cal, eid) for cal, eid in drift.orphans[i:i + BATCH_LIMIT]])
        repairs["orphans"] += len(drift.orphans)
        if own_events:
            repairs["busy_periods"] += self.busy.rebuild_from(conn, [e for e in events if not e.solarnexus], now)
            conn = conn.model_copy(update={"busy_rebuilt_at": now})
        if self.conflicts is not None:
            # Every visit (at least daily): the rebuilt busy periods, and any conflict left open by a change
            # judged nowhere else (e.g. an unassignment whose milestone push lost a race with a sync).
            repairs.update(self.conflicts.user_changed(conn, now))
        return repairs

    def _behind_their_mirror(self, refs: list[EventRef]) -> set[str]:
        """The milestones among `refs` whose mirror has a newer version than the ref records (or none)."""
        if not refs:
            return set()
        mirrors = self.store.mirrors([r.milestone_id for r in refs])
        return {r.milestone_id for r in refs
                if r.milestone_id not in mirrors or int(mirrors[r.milestone_id].get("version", 0)) > r.version}

    def _forget(self, user_id: str, milestone_ids: set[str]) -> None:
        """Drop the refs of drifted events so the sync writes them again from the mirror."""
        for mid in milestone_ids:
            ref = self.store.get_ref(mid, user_id)
            if ref is not None:
                self.store.put_ref(ref.model_copy(update={"content_hash": "drifted"}))

    def read_and_report(self, conn: Connection, events: list[CronofyEvent], catching_up: bool) -> int:
        """Report the user's moves and deletes of SolarNexus events among `events` (the reconciler's
        full read goes through the same rules as a notification's)."""
        return sum(self._solarnexus_event(conn, e, catching_up) for e in events if e.solarnexus)

    def _change(self, conn: Connection, client: UserCalendar, changes_since: str | None) -> dict:
        params: dict = {"include_managed": True, "include_deleted": True, "include_moved": True}
        if changes_since:
            params["last_modified"] = cronofy_time(changes_since)
        others: list[CronofyEvent] = []
        reported = 0
        for event in events_of(client.read_events(**params)):
            if event.solarnexus:
                reported += self._solarnexus_event(conn, event)
            else:
                others.append(event)
        # The changed events' own busy periods: no free/busy request.
        weeks = self.busy.apply(conn, others) if others else 0
        return {"reported": reported, "busy_weeks_changed": weeks}

    def _ref_for(self, conn: Connection, event_id: str) -> EventRef | None:
        milestone_id = milestone_id_from_event_id(event_id)
        if milestone_id is not None:
            return self.store.get_ref(milestone_id, conn.user_id)
        return next((r for r in self.store.refs_of_user(conn.user_id) if r.event_id == event_id), None)

    def _solarnexus_event(self, conn: Connection, event: CronofyEvent, catching_up: bool = False) -> int:
        assert event.event_id is not None
        ref = self._ref_for(conn, event.event_id)
        if ref is None or ref.calendar_id != event.calendar_id:
            return 0  # not (or no longer) ours to report: e.g. the echo of our own delete or move
        if ref.removed_by_user_version is not None:
            return 0  # already reported
        if catching_up and not changed_after_our_write(event, ref):
            return 0  # not a change made after our write: drift, which the reconciler repairs
        said = _what_the_user_did(conn, ref, event)
        # A move out of the years the core platform accepts (2000-2099, e.g. to 9999) is reported as a
        # removal: as a reschedule the core's resulting upsert would be refused by our own milestone check
        # and dead-letter; the user took the event off any date SolarNexus can schedule.
        if event.deleted or not in_accepted_years(*event.times()):
            # Published first, recorded after: a failure in between is retried (the notification's
            # message comes back) and sends the same message id again, which the core platform can
            # drop; recording first would lose the change for good if the publish failed.
            self.publisher.calendar_change(MilestoneRemovedOnCalendar(**said))
            self.store.put_ref(ref.model_copy(update={"removed_by_user_version": ref.version}))
            logger.info("event removed on calendar", extra={"milestone_id": ref.milestone_id,
                                                            "moved_out_of_range": not event.deleted})
            metrics.add_metric(name="RemovalsReceived", unit="Count", value=1)
            return 1
        start, end = event.times()
        if (start, end) == (ref.user_moved_start, ref.user_moved_end):
            return 0  # a move already reported
        # Back at the times we wrote, after a reported move: the user moved it back (our own writes
        # record a fresh ref, which has no reported move).
        moved_back = ref.user_moved_start is not None
        if (start, end) == (ref.start, ref.end) and not moved_back:
            return 0  # our own write
        mirror, _, _ = self.store.milestone_partition(ref.milestone_id)
        m = mirror_milestone(mirror)
        if m is not None and m.on_calendar and m.version > ref.version:
            if (start, end) == pushed_times(calendar_event(m)):
                return 0  # the echo of a newer write whose ref is not recorded yet
        if _before_our_last_write(event, ref):
            return 0  # our newer write (not applied by Cronofy yet) puts SolarNexus's time back
        self.publisher.calendar_change(MilestoneRescheduledOnCalendar(
            **said, start=start, end=end, all_day=len(start) == 10, timezone=ref.timezone))
        # ref.updated_at stays the time of our last write: _before_our_last_write compares with it
        self.store.put_ref(ref.model_copy(update={"user_moved_start": start, "user_moved_end": end}))
        logger.info("event rescheduled on calendar", extra={"milestone_id": ref.milestone_id})
        metrics.add_metric(name="ReschedulesReceived", unit="Count", value=1)
        return 1

