"""The connection lifecycle: connect, OAuth callback, calendar choice, status, disconnect, cleanup.

Rules live here; the Cronofy client talks, the store remembers, handlers only translate events.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from calsync import push_signature
from calsync.caller import Caller
from calsync.config import Settings
from calsync.cronofy import (
    CronofyApp,
    CronofyAuthError,
    CronofyError,
    CronofyInvalidResponse,
    CronofyUser,
    InvalidGrant,
    ProfileDisconnected,
    interactive,
)
from calsync.dynamo import retry_on_conflict
from calsync.errors import AccountInUse, ConflictError, Forbidden, InvalidRequest, InvalidState, NeedsReauth, NotFound
from calsync.models import (
    CHECK_BEFORE_EXPIRY,
    CRONOFY_PROVIDER_NAMES,
    EARLY_CHECK_AFTER,
    ONE_PAGE,
    BackfillProgress,
    Calendar,
    Connection,
    ConnectionState,
    OAuthStateClaims,
    TokenSet,
    iso,
    utcnow,
)
from calsync.oauth_state import StateError, StateSigner
from calsync.observability import logger, metrics
from calsync.publisher import Publisher
from calsync.store import Store
from calsync.vault import TokenVault

# A new authorization may replace a connection in these states (reconnect after a broken sync,
# or a second try while a calendar choice is still pending).
REPLACEABLE = {ConnectionState.NEEDS_REAUTH.value, ConnectionState.PENDING_CALENDAR.value}
# `connected_by` of a connection an org admin made through Enterprise Connect (calsync.enterprise).
ADMIN_CONNECTED = "enterprise_connect"
ACTIVE = {ConnectionState.CONNECTED, ConnectionState.SYNCING}
# What an OAuth callback's clean-up at Cronofy (close a channel, revoke a grant) may take, from the
# margin a route keeps (cronofy.ROUTE_MARGIN_SECONDS) once the flow's own Cronofy time is spent.
CLEANUP_SECONDS = 2.0
CALENDARS_CACHE_SECONDS = 60
TIMEZONE_RECHECK = timedelta(days=7)


def calendars_of(userinfo: dict) -> list[Calendar]:
    """The calendars of a Cronofy userinfo answer (`cronofy.data.profiles[].profile_calendars`)."""
    found = []
    for profile in (userinfo.get("cronofy.data") or {}).get("profiles") or []:
        for calendar in profile.get("profile_calendars") or []:
            found.append(Calendar.model_validate({
                **calendar, "profile_id": profile.get("profile_id"), "profile_name": profile.get("profile_name"),
                "provider_name": profile.get("provider_name")}))
    return found


def known_zone(name: str | None) -> str | None:
    """An IANA zone this runtime knows, or None (treated as UTC)."""
    if not name:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        logger.warning("unknown time zone from the calendar account", extra={"zoneinfo": name})
        return None
    return name


def callback_refusal(record: dict | None, claims: OAuthStateClaims, params: dict) -> str | None:
    """Why an OAuth callback (a user's, or Enterprise Connect's) is refused, or None: its state must be
    unused and issued to this user and org, Cronofy must not report an error, and a code must come."""
    if record is None or record.get("user_id") != claims.user_id or record.get("org_id") != claims.org_id:
        return "state_used"
    if params.get("error"):
        return "access_denied" if params["error"] == "access_denied" else "authorization_failed"
    if not params.get("code"):
        return "missing_code"
    return None


class OrgMismatch(Exception):
    """A user-queue message names an org the connection does not belong to."""


# A web-app path with an optional query: RFC 3986 path and query characters only (no fragment, no
# control, space or non-ASCII characters, which would reach the Location header as they are).
_RETURN_TO = re.compile(r"^/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,;=:@/%?]*$")


def valid_return_to(value: str | None) -> str | None:
    """Only same-site paths: no open redirect through the OAuth flow, nothing injected into a header."""
    if value is None:
        return None
    if len(value) > 512 or not _RETURN_TO.match(value) or "//" in value.split("?", 1)[0]:
        raise InvalidRequest("return_to must be a path on the web app, like /profile", code="invalid_return_to")
    return value


def with_outcome(base_url: str, return_to: str | None, outcome: dict[str, str], default: str = "/profile") -> str:
    """The web-app URL of `return_to` with the flow's outcome in its query (replacing any outcome keys the
    path already carried, so the first value a parser reads is the true one)."""
    parts = urlsplit(return_to or default)
    replaced = set(outcome) | {"reason"}
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in replaced]
    return f"{base_url}{urlunsplit(('', '', parts.path, urlencode(kept + list(outcome.items())), ''))}"


def _disconnecting(conn: Connection) -> Connection | None:
    """The change a disconnect makes (None: already being disconnected)."""
    if conn.state == ConnectionState.DISCONNECTING:
        return None
    return conn.model_copy(update={"state": ConnectionState.DISCONNECTING, "updated_at": utcnow()})


class ConnectionService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        vault: TokenVault,
        cronofy: CronofyApp,
        signer: StateSigner,
        publisher: Publisher,
        signing_key: str,
        workflow=None,
    ):
        self.settings = settings
        self.store = store
        self.vault = vault
        self.cronofy = cronofy
        self.signer = signer
        self.publisher = publisher
        self._signing_key = signing_key.encode()
        self.workflow = workflow  # BackfillWorkflow: starts the backfill state machine
        self._token_cache: dict[str, tuple[bytes, TokenSet]] = {}

    # ---- helpers -----------------------------------------------------------------------------

    def channel_token(self, user_id: str) -> str:
        """Per-user token in the channel callback URL, derived (not stored) so it can be rebuilt."""
        return push_signature.channel_token(self._signing_key.decode(), user_id)

    def channel_callback_url(self, user_id: str) -> str:
        return f"{self.settings.public_api_url}/v1/webhooks/cronofy/{self.channel_token(user_id)}"

    def user_client(self, conn: Connection) -> CronofyUser:
        ciphertext = self.store.get_tokens(conn.user_id)
        if ciphertext is None:
            raise InvalidGrant("no tokens stored")
        # A warm container decrypts a user's tokens once: the cache is keyed by the ciphertext, so a
        # refresh (a new ciphertext) or a revoke (no item) is seen at once. Plaintext stays in memory only.
        tokens = self._open_tokens(conn.user_id, ciphertext)
        return self.cronofy.for_user(tokens, lambda fresh: self._save_tokens(conn.user_id, fresh),
                                     lambda: self._stored_tokens(conn.user_id))

    def _open_tokens(self, user_id: str, ciphertext: bytes) -> TokenSet:
        cached = self._token_cache.get(user_id)
        if cached is not None and cached[0] == ciphertext:
            return cached[1]
        tokens = self.vault.open(user_id, ciphertext)
        self._token_cache[user_id] = (ciphertext, tokens)
        return tokens

    def _stored_tokens(self, user_id: str) -> TokenSet | None:
        """The tokens stored now (a client whose refresh got invalid_grant asks: another refresh may have
        rotated the refresh token it holds)."""
        ciphertext = self.store.get_tokens(user_id)
        return None if ciphertext is None else self._open_tokens(user_id, ciphertext)

    def _save_tokens(self, user_id: str, tokens: TokenSet) -> None:
        ciphertext = self.vault.seal(user_id, tokens)
        self.store.save_tokens(user_id, ciphertext)
        self._token_cache[user_id] = (ciphertext, tokens)
        # A fresh access token is good for about an hour: for a calendar whose notifications' reads cannot be
        # the check at no cost, bring the reconciler's daily check forward to just before the token
        # expires, so the check uses it instead of minting one of its own (models.py).
        now = utcnow()
        at = max(now, tokens.expires_at - CHECK_BEFORE_EXPIRY)
        self.store.request_visit(user_id, iso(at), iso(now - EARLY_CHECK_AFTER), more_pages_than=ONE_PAGE)

    def mark_needs_reauth(self, conn: Connection, reason: str) -> Connection:
        """Put the connection in needs_reauth: its grant or its provider link is gone, so nothing can be
        written until the user connects again (whose backfill restores the calendar)."""
        return self._mark_broken(conn, ConnectionState.NEEDS_REAUTH, reason,
                                 unless={ConnectionState.NEEDS_REAUTH, ConnectionState.DISCONNECTING},
                                 message="connection needs re-authorization", metric="NeedsReauth",
                                 same=lambda c: c.cronofy_sub == conn.cronofy_sub)

    def mark_calendar_unwritable(self, conn: Connection, reason: str) -> Connection:
        """Ask the user to choose a calendar again (pending_calendar, with the reason): the chosen one was
        deleted or made read-only, so writes to it are refused. The choice's backfill fills the new one."""
        saved = self._mark_broken(conn, ConnectionState.PENDING_CALENDAR, reason,
                                  unless=set(ConnectionState) - ACTIVE,
                                  message="calendar no longer writable", metric="CalendarNotWritable",
                                  same=lambda c: c.calendar_id == conn.calendar_id)
        # The picker must not offer it again from the brief cache (_account_calendars): expire it.
        self.store.put_calendars(conn.user_id, conn.connection_id or conn.cronofy_sub, [], 0)
        return saved

    def _mark_broken(self, conn: Connection, state: ConnectionState, reason: str, *, unless: set[ConnectionState],
                     message: str, metric: str, same: Callable[[Connection], bool]) -> Connection:
        """Move the connection to `state` with `reason` as its last error, unless it is in one of `unless`
        or no longer `same` as the one that failed (re-reading it when another writer saved it meanwhile:
        a refusal from the calendar the user just left must not mark the one they chose, nor a dead
        grant the account they connected since)."""
        held: list[Connection] = [conn]
        marked: list[Connection] = []
        gone: list[bool] = []

        def read() -> Connection | None:  # the connection the caller holds first, then fresh reads
            current = held.pop() if held else self.store.get_connection(conn.user_id)
            if current is None:
                gone.append(True)
            return current

        def mark(current: Connection) -> Connection | None:
            marked.clear()  # only the last attempt counts
            if current.state in unless or not same(current):
                return None
            marked.append(current)
            return current.model_copy(update={
                "state": state, "last_error": reason, "last_error_at": utcnow(), "updated_at": utcnow()})

        saved = retry_on_conflict(read, mark, self.store.save_connection, attempts=5)
        if saved is None:
            if gone:
                return conn
            raise ConflictError(f"connection of {conn.user_id} keeps changing")
        if marked:
            logger.warning(message, extra={"user_id": conn.user_id, "reason": reason, "state": state.value})
            metrics.add_metric(name=metric, unit="Count", value=1)
            self.publisher.connection_changed(conn.org_id, conn.user_id, state, reason)
        return saved

    def _own_connection(self, caller: Caller) -> Connection | None:
        """The caller's connection. User ids (the JWT `sub`) are unique across SolarNexus, not per org;
        a connection is still only ever reached with a session of its own org.

        The user's own session (its org claim, the core platform's word) wins over an admin's naming:
        a connection another org's admin made for this user id through Enterprise Connect (which the
        service could not check against anything) is not theirs to keep. It is disconnected the usual
        way in its own org, and the user sees no connection (None), never a 403 on their own calendar."""
        conn = self.store.get_connection(caller.user_id)
        if conn is not None and conn.org_id != caller.org_id:
            if conn.connected_by == ADMIN_CONNECTED:
                self._disown(conn)
                return None
            logger.warning("session org differs from the connection's org", extra={"user_id": caller.user_id})
            raise Forbidden("this calendar connection belongs to another organization")
        return conn

    def _disown(self, conn: Connection) -> None:
        """Disconnect an admin-made connection whose user's own session names another org."""
        logger.warning("an admin connected a user of another org: disconnecting it",
                       extra={"user_id": conn.user_id, "org_id": conn.org_id})
        metrics.add_metric(name="EnterpriseMemberOfAnotherOrg", unit="Count", value=1)
        self.request_disconnect(Caller(user_id=conn.user_id, org_id=conn.org_id))

    def _foreign_leftover(self, caller: Caller) -> bool:
        """Whether another org's admin-made connection under the caller's id is still being removed."""
        conn = self.store.get_connection(caller.user_id)
        return conn is not None and conn.org_id != caller.org_id

    def _require_connection(self, caller: Caller) -> Connection:
        conn = self._own_connection(caller)
        if conn is None:
            raise NotFound("no calendar is connected")
        return conn

    def _redirect(self, outcome: str, reason: str | None = None, return_to: str | None = None) -> str:
        query = {"calendar_sync": outcome}
        if reason:
            query["reason"] = reason
        return with_outcome(self.settings.web_app_url, return_to, query)

    # ---- connect -----------------------------------------------------------------------------

    def start_connect(self, caller: Caller, provider: str, return_to: str | None) -> tuple[str, str]:
        """Returns (authorization URL, browser-binding secret for the cookie)."""
        existing = self._own_connection(caller)
        if existing is None and self._foreign_leftover(caller):
            raise InvalidState("a connection made for you elsewhere is being removed; try again in a minute",
                               code="disconnect_in_progress")
        if existing and existing.state == ConnectionState.DISCONNECTING:
            raise InvalidState("your calendar is still being disconnected; try again in a minute",
                               code="disconnect_in_progress")
        if existing and existing.state.value not in REPLACEABLE:
            raise InvalidState(
                f"a calendar is already connected (state {existing.state.value}); "
                "disconnect it first or choose another calendar"
            )
        state, binding, claims = self.signer.issue(caller.user_id, caller.org_id, provider, return_to)
        self.store.put_oauth_state(claims.nonce, caller.user_id, caller.org_id, claims.expires_at)
        url = self.cronofy.authorization_url(self.settings.oauth_redirect_uri, state, CRONOFY_PROVIDER_NAMES[provider])
        return url, binding

    def complete_oauth(self, params: dict[str, str], binding: str | None) -> str:
        """The OAuth callback. Always returns the web-app URL to redirect to; stores nothing on failure."""
        try:
            claims = self.signer.verify(params.get("state", ""), binding)
        except StateError as error:
            logger.info("oauth callback refused", extra={"reason": error.reason})
            return self._redirect("error", error.reason)
        reason = callback_refusal(self.store.consume_oauth_state(claims.nonce), claims, params)
        if reason is not None:
            if reason == "state_used":
                logger.info("oauth callback refused", extra={"reason": reason, "user_id": claims.user_id})
            return self._redirect("error", reason, claims.return_to)
        try:
            return self._connect_with_code(
                claims.user_id, claims.org_id, claims.provider, params["code"], claims.return_to
            )
        except CronofyError as error:
            logger.warning("oauth completion failed", extra={"user_id": claims.user_id, "error": str(error)})
            refused = isinstance(error, InvalidGrant | CronofyInvalidResponse)
            reason = "code_exchange_failed" if refused else "calendar_service_unavailable"
            return self._redirect("error", reason, claims.return_to)

    def _connect_with_code(self, user_id: str, org_id: str, provider: str, code: str, return_to: str | None) -> str:
        grant = self.cronofy.exchange_code(code, self.settings.oauth_redirect_uri)
        tokens = grant.token_set()
        client = self.cronofy.for_user(tokens, lambda fresh: None)
        owner = self.store.account_owner(grant.sub)
        if owner is not None and owner != user_id:
            # A shared mailbox (installs@) already connected by a teammate. Refused: a disconnect's bulk
            # delete and revoke act on the whole account, so two users on it would take each other's
            # events and authorization. Not revoked either, for the same reason: the teammate keeps it.
            logger.info("calendar account already connected by another user", extra={"user_id": user_id})
            return self._redirect("error", "account_in_use", return_to)
        replaced = self.store.get_connection(user_id)
        if replaced is not None and replaced.org_id != org_id:
            self._abandon(client, None, grant.sub, user_id)
            return self._redirect("error", "already_connected", return_to)  # never across orgs
        replaced_tokens = self.store.get_tokens(user_id) if replaced else None
        channel_id = None
        try:
            account = client.userinfo()  # the calendars and the account's time zone in one request
            calendars = self._writable(
                calendars_of(account), grant.linking_profile.profile_id if grant.linking_profile else None
            )
            if not calendars:
                self._abandon(client, None, grant.sub, user_id)
                return self._redirect("error", "no_writable_calendar", return_to)
            channel_id = client.create_channel(self.channel_callback_url(user_id)).channel_id
            now = utcnow()
            only = calendars[0] if len(calendars) == 1 else None
            profile = grant.linking_profile
            conn = Connection(
                user_id=user_id,
                org_id=org_id,
                state=ConnectionState.SYNCING if only else ConnectionState.PENDING_CALENDAR,
                provider=provider,
                cronofy_sub=grant.sub,
                connection_id=uuid.uuid4().hex,
                profile_id=profile.profile_id if profile else None,
                profile_name=profile.profile_name if profile else calendars[0].profile_name,
                calendar_id=only.calendar_id if only else None,
                calendar_name=only.calendar_name if only else None,
                channel_id=channel_id,
                connected_at=now,
                updated_at=now,
                timezone=known_zone(account.get("zoneinfo")),
                timezone_checked_at=now,
                # A relink (or a new account in place of the old one): what the user changed on the calendar
                # while we could not read it (needs_reauth skips notifications) reaches no notification and
                # no backfill (it writes from the mirror), so the reconciler checks it right after the
                # backfill instead of a day on (the 20,000-user rough run: a move made while the grant was
                # lost stayed unreported).
                visit_requested_at=now if replaced is not None else None,
            )
            self.store.create_connection(conn, self.vault.seal(user_id, client.tokens), REPLACEABLE)
        except AccountInUse:
            with interactive(CLEANUP_SECONDS):  # our new channel only: the account stays authorized
                self.close_unless_live(client, channel_id, user_id)
            return self._redirect("error", "account_in_use", return_to)
        except ConflictError:
            self._abandon(client, channel_id, grant.sub, user_id)
            return self._redirect("error", "already_connected", return_to)
        except CronofyError:
            self._abandon(client, channel_id, grant.sub, user_id)
            raise
        if replaced is not None:
            self._retire(replaced, replaced_tokens, client, conn)
        if only:
            conn = self.on_calendar_selected(conn, None)
        logger.info("calendar connected", extra={"user_id": user_id, "state": conn.state.value})
        self.publisher.connection_changed(org_id, user_id, conn.state, conn.last_error)
        return self._redirect("connected" if only else "choose_calendar", None, return_to)

    def _abandon(self, client: CronofyUser, channel_id: str | None, sub: str, user_id: str) -> None:
        with interactive(CLEANUP_SECONDS):  # its own time: the flow's may be spent (a slow Cronofy)
            self.abandon(client, channel_id, sub, user_id)

    def abandon(self, client: CronofyUser, channel_id: str | None, sub: str, user_id: str) -> None:
        """Undo a half-made connection of `user_id` at Cronofy so nothing is left behind (a user's connect,
        an Enterprise Connect member's): its channel unless a stored connection lives on it, and its grant
        unless a connection holds that account.
        Cronofy revokes by account, so revoking a second consent to an account already connected
        (another tab's flow that won the race, a member who connected themselves) would also revoke
        the connection that works; and it hands back the same channel for the same account and callback
        URL, so closing the refused attempt's channel would close the live connection's."""
        if self.store.account_owner(sub) is not None:
            self.close_unless_live(client, channel_id, user_id)
            return
        try:
            self.close_unless_live(client, channel_id, user_id, quietly=False)
            self.cronofy.revoke(client.tokens)
        except CronofyError as error:
            logger.warning("could not revoke an abandoned authorization", extra={"error": type(error).__name__})

    def close_unless_live(self, client: CronofyUser, channel_id: str | None, user_id: str,
                          quietly: bool = True) -> None:
        """Close a channel made for `user_id` unless their stored connection uses it. The callback URL
        carries the user's channel token, so only their own connection can share a channel with it
        (a strongly consistent read by key, not the by_channel index)."""
        if not channel_id:
            return
        live = self.store.get_connection(user_id)
        if live is not None and live.channel_id == channel_id:
            logger.info("refused attempt shares the live connection's channel: left open", extra={"user_id": user_id})
            return
        if quietly:
            self._close_quietly(client, channel_id)
        else:
            client.close_channel(channel_id)

    @staticmethod
    def _close_quietly(client: CronofyUser, channel_id: str | None) -> None:
        if not channel_id:
            return
        try:
            client.close_channel(channel_id)
        except CronofyError as error:
            logger.warning("could not close a channel", extra={"error": str(error)})

    def _retire(self, old: Connection, old_ciphertext: bytes | None, new_client: CronofyUser,
                new: Connection) -> None:
        """A new authorization replaced a pending or broken connection: close its channel and, when it
        was another calendar account, revoke that account's authorization and release its claim. (The
        same account is not revoked: that would revoke the new authorization too.)"""
        if old.cronofy_sub == new.cronofy_sub:
            if old.channel_id != new.channel_id:  # Cronofy hands back the same channel for the same URL
                with interactive(CLEANUP_SECONDS):
                    self._close_quietly(new_client, old.channel_id)
            return
        try:
            if old_ciphertext is None:
                raise InvalidGrant("no tokens stored")
            old_client = self.cronofy.for_user(self.vault.open(old.user_id, old_ciphertext), lambda fresh: None)
            with interactive(CLEANUP_SECONDS):  # its own time, as in _abandon
                self._close_quietly(old_client, old.channel_id)
                self.cronofy.revoke(old_client.tokens)
        except CronofyError as error:  # a broken authorization may be gone already
            logger.warning("could not revoke a replaced authorization", extra={"user_id": old.user_id,
                                                                               "error": str(error)})
        self.store.release_account(old.cronofy_sub, old.user_id)

    @staticmethod
    def _writable(calendars: list[Calendar], profile_id: str | None) -> list[Calendar]:
        return [c for c in calendars if c.writable and (profile_id is None or c.profile_id == profile_id)]

    def on_calendar_selected(self, conn: Connection, previous_calendar_id: str | None) -> Connection:
        """A calendar was chosen (first time or switch; `conn` is already SYNCING): start the backfill
        that fills it (the last 30 days and everything ahead) or moves every event to it."""
        run_id = uuid.uuid4().hex
        self.store.put_backfill(conn.user_id, run_id, BackfillProgress(status="pending"))
        try:
            self.workflow.start(conn.user_id, conn.org_id, run_id, previous_calendar_id)
        except Exception as error:  # noqa: BLE001 - the connection stays usable; repair retries the backfill
            logger.exception("backfill could not start", extra={"user_id": conn.user_id})
            self.store.put_backfill(conn.user_id, run_id, BackfillProgress(status="failed"), error=type(error).__name__)
            return self.store.save_connection(conn.model_copy(update={
                "state": ConnectionState.CONNECTED,
                "last_error": "calendar backfill could not start; it will be retried",
                "last_error_at": utcnow(),
                "updated_at": utcnow()}))
        return conn

    def refresh_timezone(self, conn: Connection, client: CronofyUser, now: datetime | None = None) -> None:
        """Keep the account's time zone current: one userinfo request a week per user at most (the
        reconciler's visit calls this; Cronofy sends no notification when it changes)."""
        now = now or utcnow()
        if conn.timezone_checked_at is not None and now - conn.timezone_checked_at < TIMEZONE_RECHECK:
            return
        zone = known_zone(client.userinfo().get("zoneinfo")) or conn.timezone
        # updated_at untouched: it dates state changes
        self.store.update_connection(conn.user_id, lambda c: c.model_copy(update={
            "timezone": zone, "timezone_checked_at": now}))

    # ---- status and calendar choice ----------------------------------------------------------

    def status(self, caller: Caller) -> dict:
        conn = self._own_connection(caller)
        if conn is None:
            return {"state": ConnectionState.NOT_CONNECTED.value}
        view = conn.public_view()
        progress = self.store.get_backfill(caller.user_id)
        if progress:
            view["backfill"] = {"status": progress.get("status"), "done": int(progress.get("done", 0)),
                                "total": int(progress.get("total", 0)), "error": progress.get("error")}
        return view

    @staticmethod
    def _require_live(conn: Connection) -> None:
        if conn.state == ConnectionState.DISCONNECTING:
            raise InvalidState("the calendar is being disconnected")
        if conn.state == ConnectionState.NEEDS_REAUTH:
            raise NeedsReauth("the calendar authorization must be renewed: connect again")

    def _account_calendars(self, conn: Connection) -> list[Calendar]:
        """The writable calendars of the connection's account: from Cronofy at most once per
        CALENDARS_CACHE_SECONDS per connection (the picker, then the choice, cost one request)."""
        self._require_live(conn)
        key = conn.connection_id or conn.cronofy_sub
        now = int(utcnow().timestamp())
        cached = self.store.get_calendars(conn.user_id, key, now)
        if cached is not None:
            return [Calendar.model_validate(c) for c in cached]
        try:
            found = self._writable(self.user_client(conn).calendars(), conn.profile_id)
        except (InvalidGrant, CronofyAuthError) as error:
            self.mark_needs_reauth(conn, "authorization_revoked")
            raise NeedsReauth("the calendar authorization must be renewed") from error
        self.store.put_calendars(conn.user_id, key, [c.model_dump() for c in found], now + CALENDARS_CACHE_SECONDS)
        return found

    def calendars(self, caller: Caller) -> list[dict]:
        conn = self._require_connection(caller)
        found = self._account_calendars(conn)
        return [
            {
                "id": c.calendar_id,
                "name": c.calendar_name,
                "primary": c.calendar_primary,
                "selected": c.calendar_id == conn.calendar_id,
            }
            for c in found
        ]

    def select_calendar(self, caller: Caller, calendar_id: str) -> dict:
        conn = self._require_connection(caller)
        chosen = next((c for c in self._account_calendars(conn) if c.calendar_id == calendar_id), None)
        if chosen is None:
            raise InvalidRequest("that calendar is not a writable calendar of this account",
                                 code="calendar_not_writable")
        if chosen.calendar_id == conn.calendar_id and conn.state != ConnectionState.PENDING_CALENDAR:
            return self.status(caller)
        # Back in pending_calendar after its calendar refused writes, the user may choose that calendar
        # again (it is writable again): the backfill is then given it as `previous` too, so it plans
        # the events already there (deleted or unassigned milestones leave) and empties nothing.
        previous = conn.calendar_id
        try:
            conn = self.store.save_connection(conn.model_copy(update={
                "calendar_id": chosen.calendar_id,
                "calendar_name": chosen.calendar_name,
                "state": ConnectionState.SYNCING,
                "last_error": None,
                "last_error_at": None,
                "updated_at": utcnow(),
            }))
        except ConflictError as error:
            raise InvalidState("the connection changed meanwhile; try again") from error
        conn = self.on_calendar_selected(conn, previous)
        logger.info("calendar selected", extra={"user_id": conn.user_id,
                                                "switch": previous not in (None, chosen.calendar_id)})
        self.publisher.connection_changed(conn.org_id, conn.user_id, conn.state, conn.last_error)
        return self.status(caller)

    # ---- disconnect and cleanup ----------------------------------------------------------------

    def request_disconnect(self, caller: Caller) -> dict:
        conn = self._own_connection(caller)
        if conn is None:
            return {"state": ConnectionState.NOT_CONNECTED.value}
        if conn.state != ConnectionState.DISCONNECTING:
            # A write in between (a notification's read, a finishing backfill) does not refuse the
            # disconnect: it is made again on the connection as it now is.
            saved = self.store.update_connection(conn.user_id, _disconnecting)
            if saved is None:
                raise InvalidState("the connection changed meanwhile; try again")
            conn = saved
        # Sent every time: a lost message is healed by the user asking again.
        self.publisher.request_disconnect(conn.org_id, conn.user_id, conn.connection_id)
        logger.info("disconnect requested", extra={"user_id": conn.user_id})
        return {"state": ConnectionState.DISCONNECTING.value}

    def cleanup(self, user_id: str, org_id: str, reason: str, *, connection_id: str | None = None,
                occurred_before: datetime | None = None, only_if_disconnecting: bool = False) -> str:
        """Remove every SolarNexus event, close the channel, revoke, delete tokens. Idempotent.

        A job acts only on the connection it was issued for, so a replay (SQS duplicate, a re-queued
        job, a DLQ redrive) after the user connected again is a no-op: `connection_id` names the
        connection a disconnect was asked for; `occurred_before` (a deactivation's `occurred_at`)
        spares a connection made after it; `only_if_disconnecting` (a disconnect job that names no
        connection) acts only on a connection still being disconnected.

        Cronofy outages raise (the queue retries); a revoked authorization does not stop the
        local cleanup, since nothing at Cronofy can be reached any more.
        """
        conn = self.store.get_connection(user_id)
        if conn is None:
            self.store.delete_stray_tokens(user_id)  # a stray token item, if any (never a new connection)
            return "nothing_to_do"
        if conn.org_id != org_id:
            raise OrgMismatch(f"user {user_id} is not in org {org_id}")
        stale = self._stale_job(conn, connection_id, occurred_before, only_if_disconnecting)
        if stale:
            logger.info("cleanup job is not for the current connection: nothing done",
                        extra={"user_id": user_id, "reason": reason, "cause": stale})
            return "not_this_connection"
        if conn.state != ConnectionState.DISCONNECTING:
            conn = self.store.save_connection(
                conn.model_copy(update={"state": ConnectionState.DISCONNECTING, "updated_at": utcnow()})
            )
        outcome = "cleaned"
        try:
            client = self.user_client(conn)
            try:
                client.bulk_delete(delete_all=True)
            except ProfileDisconnected:
                # The provider link is gone, so Cronofy cannot reach the calendar: its events stay
                # until the user relinks (a reconnect's backfill and check then own them again).
                # Nothing here can change that, so the user still leaves: channel, grant, tokens.
                outcome = "events_unreachable"
                logger.warning("calendar profile disconnected: calendar events could not be removed",
                               extra={"user_id": user_id})
            if conn.channel_id:
                client.close_channel(conn.channel_id)
            self.cronofy.revoke(client.tokens)
        except (InvalidGrant, CronofyAuthError):
            outcome = "authorization_already_gone"
            logger.warning(
                "authorization already revoked: calendar events could not be removed", extra={"user_id": user_id}
            )
        self.store.delete_refs_of_user(user_id)
        # Conflict alerts end with the connection (before it is deleted: a failure retries the job).
        from calsync.conflict_watch import resolve_all

        resolve_all(self.store, self.publisher, conn.org_id, user_id, "disconnected")
        self.store.delete_connection(user_id, conn.connection_id, sub=conn.cronofy_sub)
        self.publisher.connection_changed(conn.org_id, user_id, ConnectionState.NOT_CONNECTED, reason)
        logger.info("connection cleaned up", extra={"user_id": user_id, "reason": reason, "outcome": outcome})
        return outcome

    @staticmethod
    def _stale_job(conn: Connection, connection_id: str | None, occurred_before: datetime | None,
                   only_if_disconnecting: bool) -> str | None:
        """Why a cleanup job is not for this connection (None: it is)."""
        if connection_id is not None and conn.connection_id is not None and connection_id != conn.connection_id:
            return "another_connection"
        if occurred_before is not None and conn.connected_at > occurred_before:
            return "connected_after_the_event"
        if connection_id is None and only_if_disconnecting and conn.state != ConnectionState.DISCONNECTING:
            return "not_disconnecting"
        return None

    # ---- org view ------------------------------------------------------------------------------

    def org_connections(self, caller: Caller, org_id: str) -> list[dict]:
        caller.require_org(org_id)
        rows = []
        for conn in self.store.connections_in_org(org_id):
            row: dict[str, object] = {
                "user_id": conn.user_id,
                "state": conn.state.value,
                "provider": conn.provider,
                "sync": conn.state in ACTIVE,
            }
            if caller.is_admin or conn.user_id == caller.user_id:
                row.update(calendar_name=conn.calendar_name, profile_name=conn.profile_name, last_error=conn.last_error)
                if conn.connected_by:  # e.g. "enterprise_connect": connected by the org's administrator
                    row["connected_by"] = conn.connected_by
            rows.append(row)
        return sorted(rows, key=lambda r: r["user_id"])
