"""What a Cronofy notification means for SolarNexus (ARCHITECTURE §4, §6).

`change`: read the user's events changed since `changes_since` (all pages, with managed, deleted and
moved events). A SolarNexus event the user moved becomes `milestone.rescheduled_on_calendar` (based
on the version we last pushed); one the user deleted becomes `milestone.removed_on_calendar` and is
not re-created until the milestone changes. The echo of our own writes is recognised by comparing
with what we pushed (and with the mirror's newest times) and is never a reschedule. Changes to the
user's other events refresh their busy blocks.

Conflict rule: the core platform applies a calendar reschedule only while its milestone version
still equals `based_on_version`; otherwise SolarNexus wins and its next upsert puts the calendar
back to SolarNexus's time.
"""

from __future__ import annotations

from datetime import datetime

from calsync.busy import Busy
from calsync.clock import parse_utc
from calsync.cronofy import CronofyAuthError, InvalidGrant
from calsync.cronofy_event import CronofyEvent, cronofy_time, events_of
from calsync.messages import MilestoneRemovedOnCalendar, MilestoneRescheduledOnCalendar
from calsync.milestones import calendar_event, milestone_id_from_event_id
from calsync.models import Connection, EventRef, utcnow
from calsync.observability import logger, metrics
from calsync.ports import EventPublisher, SyncStore, TokenKeeper, UserCalendar
from calsync.sync import WRITABLE_STATES, mirror_milestone, pushed_times


def changed_after_our_write(event: CronofyEvent, ref: EventRef) -> bool:
    """Did the calendar change this event after we last wrote it? (Cronofy's `updated` vs our write.)"""
    updated = event.updated_at
    if updated is None or ref.updated_at is None:
        return True
    return updated > ref.updated_at


def _before_our_last_write(event: CronofyEvent, ref: EventRef) -> bool:
    """Did the calendar's change happen before our latest write of this event? Cronofy answers a
    write with 202 and applies it later, so a read can still show a user's move that our newer write
    (already sent) is about to replace: SolarNexus wins that race, as if the write had landed first.
    Cronofy's `updated` has whole seconds; a change in the same second as our write is reported."""
    updated = event.updated_at
    if updated is None or ref.updated_at is None:
        return False
    return updated < ref.updated_at.replace(microsecond=0)


def _earliest(values: list[str | None]) -> str | None:
    """The earliest `changes_since` (None, a notification without one, means read everything)."""
    if not values or any(v is None for v in values):
        return None
    return min(values, key=lambda v: parse_utc(v))  # type: ignore[arg-type]


class NotificationProcessor:
    def __init__(self, store: SyncStore, tokens: TokenKeeper, publisher: EventPublisher, busy: Busy):
        self.store = store
        self.tokens = tokens
        self.publisher = publisher
        self.busy = busy

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
        if "profile_disconnected" in kinds:
            self.tokens.mark_needs_reauth(conn, "profile_disconnected")
            return {"outcome": "needs_reauth"}
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
        try:
            client = self.tokens.user_client(conn)
            result: dict = {"outcome": "processed", "coalesced": len(mine)}
            if changes:
                result.update(self._change(conn, client, _earliest(changes)))
            if initial_sync:
                result["busy_periods"] = self.busy.rebuild(conn, client)
        except (InvalidGrant, CronofyAuthError):
            self.tokens.mark_needs_reauth(conn, "authorization_revoked")
            return {"outcome": "needs_reauth"}
        self._seen(conn, read_at if changes else None, read_at if initial_sync else None)
        return result

    def _seen(self, conn: Connection, read_at: datetime | None, rebuilt_at: datetime | None = None) -> None:
        """The channel works (a notification came through it); changes were read through `read_at`."""
        now = utcnow()
        update: dict = {"channel_seen_at": now}
        if rebuilt_at is not None:
            update["busy_rebuilt_at"] = rebuilt_at
        if read_at is not None and (conn.changes_read_at is None or read_at > conn.changes_read_at):
            update["changes_read_at"] = read_at
        self.store.update_connection(conn.user_id, lambda c: c.model_copy(update=update))

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
        if event.deleted:
            self.store.put_ref(ref.model_copy(update={"removed_by_user_version": ref.version,
                                                      "updated_at": utcnow()}))
            self.publisher.calendar_change(MilestoneRemovedOnCalendar(
                org_id=conn.org_id, milestone_id=ref.milestone_id, user_id=conn.user_id,
                based_on_version=ref.version))
            logger.info("event removed on calendar", extra={"milestone_id": ref.milestone_id})
            metrics.add_metric(name="RemovalsReceived", unit="Count", value=1)
            return 1
        start, end = event.times()
        if (start, end) in {(ref.start, ref.end), (ref.user_moved_start, ref.user_moved_end)}:
            return 0  # our own write, or a move already reported
        mirror, _, _ = self.store.milestone_partition(ref.milestone_id)
        m = mirror_milestone(mirror)
        if m is not None and m.on_calendar:
            if (start, end) == pushed_times(calendar_event(m)):
                return 0  # the echo of a newer write whose ref is not recorded yet
        if _before_our_last_write(event, ref):
            return 0  # our newer write (not applied by Cronofy yet) puts SolarNexus's time back
        self.store.put_ref(ref.model_copy(update={"user_moved_start": start, "user_moved_end": end,
                                                  "updated_at": utcnow()}))
        self.publisher.calendar_change(MilestoneRescheduledOnCalendar(
            org_id=conn.org_id, milestone_id=ref.milestone_id, user_id=conn.user_id, based_on_version=ref.version,
            start=start, end=end, all_day=len(start) == 10, timezone=ref.timezone))
        logger.info("event rescheduled on calendar", extra={"milestone_id": ref.milestone_id})
        metrics.add_metric(name="ReschedulesReceived", unit="Count", value=1)
        return 1

