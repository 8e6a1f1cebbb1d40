"""Domain models shared by the store, the rules and the handlers."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from calsync.clock import iso, utcnow  # noqa: F401  (re-exported: the one clock)


class ConnectionState(StrEnum):
    NOT_CONNECTED = "not_connected"
    PENDING_CALENDAR = "pending_calendar"
    SYNCING = "syncing"
    CONNECTED = "connected"
    NEEDS_REAUTH = "needs_reauth"
    DISCONNECTING = "disconnecting"


Provider = Literal["google", "microsoft", "apple"]

# What we ask Cronofy's consent page to pre-select for each SolarNexus provider choice.
CRONOFY_PROVIDER_NAMES: dict[str, str] = {"google": "google", "microsoft": "office365", "apple": "apple"}


class Calendar(BaseModel):
    """A calendar of the connected account, as the web app sees it."""

    model_config = ConfigDict(extra="ignore")

    calendar_id: str
    calendar_name: str
    profile_id: str | None = None
    profile_name: str | None = None
    provider_name: str | None = None
    calendar_readonly: bool = False
    calendar_deleted: bool = False
    calendar_primary: bool = False

    @property
    def writable(self) -> bool:
        return not self.calendar_readonly and not self.calendar_deleted


class BackfillProgress(BaseModel):
    done: int = 0
    total: int = 0
    status: Literal["pending", "running", "succeeded", "failed"] = "pending"


# The reconciler's cadence: a full comparison of the calendar about daily (every 23 h); a connection stuck in
# `disconnecting` or `syncing` this long gets its job again.
CHECK_EVERY = timedelta(hours=23)  # an hour in hand: a visit is never more than 24 h after the last
STUCK_AFTER = timedelta(minutes=15)
# A connected calendar's push channel is confirmed by every notification through it and by the daily
# visit's listing (calsync.reconcile): unconfirmed for longer than this, it may be gone (health says so).
CHANNEL_UNCONFIRMED_AFTER = timedelta(hours=26)
# The daily check costs as little as it can (measured on the capacity benchmark, 200 users, a week, 1-hour
# tokens; reconciler requests per user per working day):
# - a notification's read is the check as well (calsync.notifications) whenever a read of everything in the
#   window costs what the read of the changed events would: the last one fit on one page (or nobody knows
#   yet). The last check of a working day is then its last notification, so the next day's usually comes
#   before the 23 h are up and the reconciler visits mostly at weekends: 1.36 (2.33 without; 1.55 when a
#   notification's read was the check only 4 h or more after the last check);
# - for a calendar too big for that, the read of everything is the check once the last check is
#   EARLY_CHECK_AFTER old (the reconciler would read as much within hours, with a token of its own), and
#   the check rides on a token live work has just minted: when live work refreshes the user's token and
#   the last check is EARLY_CHECK_AFTER old, the visit is brought forward to shortly before that token
#   expires. (With the check on notification reads, bringing visits forward for everyone cost more: 1.48,
#   the same when only visits due within 2 hours of the minted token's expiry were brought forward, and
#   1.66 within 4 hours: a notification often comes first and makes the visit unnecessary.)
EARLY_CHECK_AFTER = timedelta(hours=12)
CHECK_BEFORE_EXPIRY = timedelta(minutes=12)  # two reconciler runs in hand before the token expires
ONE_PAGE = 1


class Connection(BaseModel):
    """One user's calendar connection. Tokens live in a separate, encrypted item."""

    user_id: str
    org_id: str
    state: ConnectionState
    provider: str
    cronofy_sub: str
    # Which connection this is: a new one for every authorization, so a job issued for one connection
    # (a cleanup) never acts on the next (None for connections stored before it existed).
    connection_id: str | None = None
    profile_id: str | None = None
    profile_name: str | None = None
    calendar_id: str | None = None
    calendar_name: str | None = None
    channel_id: str | None = None
    connected_at: datetime
    updated_at: datetime
    last_sync_at: datetime | None = None
    last_error: str | None = None
    backfill: BackfillProgress | None = None
    last_reconciled_at: datetime | None = None
    # The reconciler's bookkeeping (calsync/reconcile.py): when the calendar was last compared in full
    # with what we wrote, when the push channel was last proven open (listed, or a notification came
    # through it), through when changes have been read, and a visit asked for early (the token is fresh).
    last_checked_at: datetime | None = None
    channel_seen_at: datetime | None = None
    changes_read_at: datetime | None = None
    visit_requested_at: datetime | None = None
    busy_rebuilt_at: datetime | None = None
    # Pages the last Read Events of everything (SolarNexus's and the user's own events, Cronofy's window)
    # took: one means a notification's read can be the day's check at no extra cost.
    full_read_pages: int | None = None
    # A visit that failed (any error) is tried again at this time; the error is kept for operators.
    reconcile_retry_at: datetime | None = None
    reconcile_error: str | None = None
    # When last_error was set (the admin's sync-health view shows it with the reason).
    last_error_at: datetime | None = None
    # The account's IANA time zone (Cronofy userinfo `zoneinfo`): working hours and all-day busy
    # periods are local to it. None until known (treated as UTC); re-read weekly by the reconciler.
    timezone: str | None = None
    timezone_checked_at: datetime | None = None
    # "enterprise_connect" when the org's administrator connected this calendar (calsync/enterprise.py);
    # None when the user connected it themselves.
    connected_by: str | None = None
    # Bumped on every write; conditional updates compare it so concurrent writers never clobber.
    revision: int = 0

    def channel_unconfirmed(self, now: datetime) -> bool:
        """Whether the push channel of this connected calendar has gone unconfirmed too long (a gone
        channel sends nothing: health shows it until the reconciler's listing mends it)."""
        if self.state != ConnectionState.CONNECTED or not self.calendar_id:
            return False
        return now - (self.channel_seen_at or self.connected_at) > CHANNEL_UNCONFIRMED_AFTER

    def due_at(self) -> datetime | None:
        """When the reconciler should next look at this connection (None: never). The `by_due` index
        is kept from this on every write, so the most overdue users come first in every run."""
        if self.state in (ConnectionState.DISCONNECTING, ConnectionState.SYNCING):
            due = self.updated_at + STUCK_AFTER  # a lost cleanup job or a stalled backfill
        elif self.state != ConnectionState.CONNECTED or not self.calendar_id:
            return None
        else:
            due = (self.last_checked_at or self.connected_at) + CHECK_EVERY
            if self.visit_requested_at is not None and self.visit_requested_at < due:
                due = self.visit_requested_at
        if self.reconcile_retry_at is not None and self.reconcile_retry_at > due:
            due = self.reconcile_retry_at
        return due

    def check_rides_on_read(self, now: datetime) -> bool:
        """Should a notification's read be the check as well (one read of everything in the window instead
        of the changed events)? When that costs no more, or the check is EARLY_CHECK_AFTER old (above)."""
        if self.full_read_pages is None or self.full_read_pages <= ONE_PAGE:
            return True
        return now - (self.last_checked_at or self.connected_at) >= EARLY_CHECK_AFTER

    def last_synced(self) -> datetime | None:
        """When data last moved between SolarNexus and the calendar, as this item knows it: the finished
        backfill, or the last full check (a reconciler visit or a notification's read of everything)."""
        return max((t for t in (self.last_sync_at, self.last_checked_at) if t is not None), default=None)

    def public_view(self) -> dict:
        """The status route's body (ARCHITECTURE §2)."""
        view = {
            "state": self.state.value,
            "provider": self.provider,
            "profile_name": self.profile_name,
            "calendar": {"id": self.calendar_id, "name": self.calendar_name} if self.calendar_id else None,
            "connected_at": iso(self.connected_at),
            "last_sync_at": iso(self.last_synced()),
            "backfill": self.backfill.model_dump() if self.backfill else None,
            "last_error": self.last_error,
        }
        if self.connected_by:  # "connected by your administrator"
            view["connected_by"] = self.connected_by
        return view


class TokenSet(BaseModel):
    """Cronofy OAuth tokens. Never logged: repr hides the secrets."""

    access_token: str = Field(repr=False)
    refresh_token: str = Field(repr=False)
    expires_at: datetime
    scope: str = ""

    def expired(self, now: datetime | None = None, leeway_seconds: int = 60) -> bool:
        return (now or utcnow()).timestamp() >= self.expires_at.timestamp() - leeway_seconds


class OAuthStateClaims(BaseModel):
    user_id: str
    org_id: str
    provider: str
    nonce: str
    expires_at: int
    return_to: str | None = None


class EventRef(BaseModel):
    """What we last wrote to one user's calendar for one milestone (the loop guard and the map
    for reassignment, switch, two-way and repair)."""

    milestone_id: str
    user_id: str
    calendar_id: str
    event_id: str
    version: int
    content_hash: str
    start: str
    end: str
    all_day: bool
    timezone: str
    summary: str | None = None  # as pushed: a changed title on the calendar is drift to repair
    # The user deleted the event on their calendar at this milestone version: not re-created
    # until the milestone changes again.
    removed_by_user_version: int | None = None
    # The user moved the event on their calendar (reported to the core platform): these times are
    # expected there until the milestone changes, so neither repair nor a replay reports or reverts them.
    user_moved_start: str | None = None
    user_moved_end: str | None = None
    updated_at: datetime | None = None
