"""Enterprise Connect: an org admin authorizes a Google Workspace or Microsoft 365 service account
once; the service then connects members' calendars without each member's consent screen.

1. `start`: admins only; Cronofy's Enterprise Connect page, with a signed, expiring, single-use,
   browser-bound `state` (the user flow's StateSigner and stored nonce).
2. `complete`: the admin's browser comes back with a code: the state is verified and spent, the code
   redeemed, the service account's tokens (30 minutes; refreshed on use) stored encrypted (KMS, with an
   encryption context naming the org and a purpose of their own) for the org.
3. `request_members`: at most MAX_MEMBERS per call, sent to Cronofy at most 50 per request through
   the shared rate limiter. Each member gets its own signed `state` naming org, user, grant and a
   nonce stored on the member's item (single use).
4. `member_callback`: Cronofy's call per member. The state is verified, then the member item is
   claimed in one transaction that also checks the org's Enterprise Connect is still active under
   the same grant: otherwise nothing is stored. The code is redeemed (the callback URL as
   redirect_uri), the member's primary writable calendar chosen, a push channel created and a
   normal Connection stored (`connected_by="enterprise_connect"`), and the usual backfill starts
   (`ConnectionService.on_calendar_selected`). From there milestone push, notifications, the
   reconciler and cleanup treat it as any connection.
5. `end`: disconnects every member connected through it (the usual cleanup queue, so in batches
   within the shared rate limit), never members who connected themselves, and revokes the service
   account.

Where Cronofy's documentation and the offline reference (`shared/reference/cronofy-api.md` §8)
differ, the documentation is followed: the member's code is redeemed with the `callback_url` passed
as `redirect_uri`; `delegated_scope` is required on the admin's authorization; the service account's
token answer carries `service_account_id` and no `sub`. The documentation gives no per-request limit
(the reference says 50: kept) and no callback body or error names: the emulator's choice (JSON
`{"authorization": {"code"|"error", "state"}}`) is read here, and any error is shown as a failed member
with the error as reason (`unknown_email`, `not_in_domain`, else `authorization_failed`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from typing import Any

from calsync.caller import Caller
from calsync.config import Settings
from calsync.connections import (
    ADMIN_CONNECTED,
    REPLACEABLE,
    ConnectionService,
    calendars_of,
    callback_refusal,
    known_zone,
    with_outcome,
)
from calsync.cronofy import (
    DEFAULT_SCOPE,
    DELEGATED_ACCESS_LIMIT,
    CronofyAuthError,
    CronofyError,
    CronofyInvalidResponse,
    CronofyRateLimited,
    CronofyUnavailable,
    CronofyUser,
    CronofyValidationError,
    InvalidGrant,
)
from calsync.enterprise_store import EnterpriseStore
from calsync.errors import (
    AccountInUse,
    ConflictError,
    EnterpriseConnectNotActive,
    Forbidden,
    InvalidRequest,
    InvalidState,
    MalformedRequest,
    TryLater,
)
from calsync.models import Calendar, Connection, ConnectionState, TokenSet, iso, utcnow
from calsync.oauth_state import StateError, StateSigner
from calsync.observability import logger

CONNECTED_BY = ADMIN_CONNECTED
PROVIDER = "enterprise_connect"  # the `provider` claim of the admin's OAuth state
TOKEN_PURPOSE = "enterprise-connect-service-account"
MAX_MEMBERS = 300
CALLBACK_PATH = "/v1/enterprise-connect/oauth/callback"
MEMBER_CALLBACK_PATH = "/v1/enterprise-connect/members/callback"
# A member named whom the core platform or their own session places in another org (ARCHITECTURE.md §2-§3).
NOT_IN_ORG = "not_in_org"
KNOWN_MEMBER_ERRORS = {"unknown_email", "not_in_domain", "access_denied"}
_EMAIL = re.compile(r"^[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
# Once a member's code is spent, the rest of the connection (calendars, channel) waits for the shared
# limiter this long in all rather than failing the member (the function's timeout is 30 s).
PATIENCE_AFTER_EXCHANGE_SECONDS = 15.0
# Before it, the exchange waits this long for the limiter (the code is not spent while the limiter refuses);
# longer, and Cronofy is answered 503 with Retry-After and calls back again.
PATIENCE_FOR_EXCHANGE_SECONDS = 8.0


class _CodeNotSent(Exception):
    """The shared limiter refused the code exchange before it was sent: the code is still good."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class MemberStateSigner:
    """`state` sent to Cronofy per member: HMAC-signed {org, user, grant, nonce}. Not browser-bound (no
    browser is involved) and not expiring (Cronofy calls back once the calendar has synced, which may
    take a while); single use comes from the nonce on the member's item."""

    def __init__(self, signing_key: str):
        self._key = hmac.new(signing_key.encode(), b"enterprise-connect-member-state", hashlib.sha256).digest()

    def issue(self, org_id: str, user_id: str, grant_id: str, nonce: str) -> str:
        body = _b64(json.dumps({"o": org_id, "u": user_id, "g": grant_id, "n": nonce},
                               separators=(",", ":"), sort_keys=True).encode())
        return f"{body}.{self._sign(body)}"

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def verify(self, state: Any) -> dict[str, str]:
        # A state we issued is base64url: anything else (compare_digest refuses non-ASCII text) is forged.
        if not isinstance(state, str) or not state.isascii() or state.count(".") != 1 or len(state) > 1024:
            raise StateError("invalid_state")
        body, signature = state.split(".")
        if not hmac.compare_digest(self._sign(body), signature):
            raise StateError("invalid_state")
        try:
            claims = json.loads(_unb64(body))
        except ValueError as error:
            raise StateError("invalid_state") from error
        if not isinstance(claims, dict) or not all(isinstance(claims.get(k), str) for k in "ougn"):
            raise StateError("invalid_state")
        return claims


class EnterpriseConnectService:
    def __init__(self, settings: Settings, store: EnterpriseStore, connections: ConnectionService,
                 signer: StateSigner, signing_key: str):
        self.settings = settings
        self.store = store
        self.connections = connections
        self.signer = signer
        self.member_signer = MemberStateSigner(signing_key)

    @property
    def callback_url(self) -> str:
        return f"{self.settings.public_api_url}{CALLBACK_PATH}"

    @property
    def member_callback_url(self) -> str:
        return f"{self.settings.public_api_url}{MEMBER_CALLBACK_PATH}"

    @staticmethod
    def _require_admin(caller: Caller, org_id: str) -> None:
        caller.require_org(org_id)
        if not caller.is_admin:
            raise Forbidden("only an org admin can manage Enterprise Connect")

    def _redirect(self, outcome: str, reason: str | None, return_to: str | None) -> str:
        query = {"enterprise_connect": outcome} | ({"reason": reason} if reason else {})
        return with_outcome(self.settings.web_app_url, return_to, query, default="/settings/calendar-sync")

    # ---- 1. start ------------------------------------------------------------------------------

    def start(self, caller: Caller, org_id: str, return_to: str | None) -> tuple[str, str]:
        """(Cronofy's Enterprise Connect URL, browser-binding secret for the cookie)."""
        self._require_admin(caller, org_id)
        state, binding, claims = self.signer.issue(caller.user_id, org_id, PROVIDER, return_to)
        self.connections.store.put_oauth_state(claims.nonce, caller.user_id, org_id, claims.expires_at)
        url = self.connections.cronofy.enterprise_connect_url(self.callback_url, state, DEFAULT_SCOPE)
        return url, binding

    # ---- 2. the admin's callback ---------------------------------------------------------------

    def complete(self, params: dict[str, str], binding: str | None) -> str:
        """Always the web-app URL to redirect to; nothing is stored on a failure."""
        try:
            claims = self.signer.verify(params.get("state", ""), binding)
            if claims.provider != PROVIDER:
                raise StateError("invalid_state")
        except StateError as error:
            logger.info("enterprise connect callback refused", extra={"reason": error.reason})
            return self._redirect("error", error.reason, None)
        reason = callback_refusal(self.connections.store.consume_oauth_state(claims.nonce), claims, params)
        if reason is not None:
            if reason == "state_used":
                logger.info("enterprise connect callback refused", extra={"reason": reason})
            return self._redirect("error", reason, claims.return_to)
        cronofy = self.connections.cronofy
        try:
            grant = cronofy.exchange_service_account_code(params["code"], self.callback_url)
        except CronofyError as error:
            logger.warning("enterprise connect code exchange failed", extra={"org_id": claims.org_id,
                                                                              "error": type(error).__name__})
            refused = isinstance(error, InvalidGrant | CronofyInvalidResponse)
            reason = "code_exchange_failed" if refused else "calendar_service_unavailable"
            return self._redirect("error", reason, claims.return_to)
        existing = self.store.get_org(claims.org_id)
        active = existing is not None and existing.get("status") == "active"
        grant_id = existing["grant_id"] if active and existing else uuid.uuid4().hex
        # Authorized again while active with another service account: the one replaced is revoked once
        # the new one is stored (never the same account: that would revoke the new grant too).
        replaced = self.store.get_tokens(claims.org_id) if active and existing and existing.get(
            "service_account_id") != grant.service_account_id else None
        now = iso(utcnow())
        self.store.activate(claims.org_id, {
            "status": "active", "grant_id": grant_id, "service_account_id": grant.service_account_id,
            "scope": grant.scope, "delegated_scope": DEFAULT_SCOPE, "authorized_by": claims.user_id,
            "authorized_at": now,
        }, self.connections.vault.seal(claims.org_id, grant.token_set(), TOKEN_PURPOSE))
        if replaced is not None:
            try:
                cronofy.revoke(self.connections.vault.open(claims.org_id, replaced, TOKEN_PURPOSE))
            except CronofyError as error:
                logger.warning("could not revoke the replaced service account",
                               extra={"org_id": claims.org_id, "error": type(error).__name__})
        logger.info("enterprise connect authorized", extra={"org_id": claims.org_id, "by": claims.user_id})
        return self._redirect("connected", None, claims.return_to)

    # ---- the service account's client ----------------------------------------------------------

    def _service_account(self, org_id: str, grant_id: str) -> CronofyUser:
        ciphertext = self.store.get_tokens(org_id)
        if ciphertext is None:
            raise EnterpriseConnectNotActive("Enterprise Connect is not active for this org")
        tokens = self.connections.vault.open(org_id, ciphertext, TOKEN_PURPOSE)

        def keep(fresh: TokenSet) -> None:
            self.store.save_tokens(org_id, grant_id, self.connections.vault.seal(org_id, fresh, TOKEN_PURPOSE))

        return self.connections.cronofy.for_user(tokens, keep)

    def _active(self, org_id: str) -> dict[str, Any]:
        org = self.store.get_org(org_id)
        if org is None or org.get("status") != "active":
            raise EnterpriseConnectNotActive(
                "Enterprise Connect is not active for this org: an admin must authorize it first")
        return org

    # ---- 3. asking for members -----------------------------------------------------------------

    def request_members(self, caller: Caller, org_id: str, members: list[dict[str, str]]) -> dict[str, Any]:
        self._require_admin(caller, org_id)
        named = _named_members(members)
        org = self._active(org_id)
        grant_id = org["grant_id"]
        existing = self.connections.store.connections([user_id for user_id, _ in named])
        now = iso(utcnow())
        results: list[dict[str, Any]] = []
        to_ask: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for user_id, email in named:
            conn = existing.get(user_id)
            if (conn is not None and conn.org_id != org_id) or self._known_elsewhere(user_id, org_id, conn):
                # A user the core platform or their own session placed in another org: refused alone (the
                # rest of the crew is still asked for), with a reason that names no other org.
                results.append(_refused(user_id, email))
                continue
            if conn is not None:
                # Connected already (themselves, or by an earlier request): left as it is.
                reason = "already_connected_by_admin" if conn.connected_by == CONNECTED_BY else "already_connected"
                results.append({"user_id": user_id, "email": email, "status": "skipped", "reason": reason})
                continue
            nonce = secrets.token_urlsafe(18)
            record = {"user_id": user_id, "email": email, "status": "requested", "grant_id": grant_id,
                      "nonce": nonce, "requested_at": now, "updated_at": now, "requested_by": caller.user_id}
            entry = {"email": email, "callback_url": self.member_callback_url, "scope": DEFAULT_SCOPE,
                     "state": self.member_signer.issue(org_id, user_id, grant_id, nonce)}
            to_ask.append((record, entry))
        sent = self._ask_cronofy(org_id, grant_id, to_ask, results) if to_ask else 0
        logger.info("enterprise connect members requested",
                    extra={"org_id": org_id, "members": len(to_ask), "cronofy_requests": sent})
        return {"members": results, "requested": sum(r["status"] == "requested" for r in results),
                "cronofy_requests": sent}

    def _known_elsewhere(self, user_id: str, org_id: str, conn: Connection | None) -> bool:
        """Whether what the service holds places `user_id` in another org than `org_id`: a connection
        (made with the user's own session, or the org's), or scheduled milestones the core platform sent
        for another org naming them. An id known nowhere cannot be checked: the user's own session
        settles it later (ConnectionService._own_connection)."""
        if conn is not None:
            return conn.org_id != org_id
        return bool(self.connections.store.orgs_assigning(user_id) - {org_id})

    def _ask_cronofy(self, org_id: str, grant_id: str, to_ask: list[tuple[dict[str, Any], dict[str, Any]]],
                     results: list[dict[str, Any]]) -> int:
        """Ask Cronofy for these members, DELEGATED_ACCESS_LIMIT a request; each member's outcome is
        appended to `results`. How many requests Cronofy accepted."""
        client = self._service_account(org_id, grant_id)
        sent = 0
        for start in range(0, len(to_ask), DELEGATED_ACCESS_LIMIT):
            chunk = to_ask[start:start + DELEGATED_ACCESS_LIMIT]
            for record, _ in chunk:  # recorded first: a callback can arrive before the 202 does
                self.store.put_member(org_id, record)
            reason = _delegated_access_refusal(client, [entry for _, entry in chunk])
            sent += reason is None
            for record, _ in chunk:
                if reason:
                    self.store.update_member(org_id, record["user_id"], expect_status="requested",
                                             status="failed", reason=reason, nonce=None, updated_at=iso(utcnow()))
                results.append({"user_id": record["user_id"], "email": record["email"],
                                "status": "failed" if reason else "requested", "reason": reason})
        return sent

    # ---- 4. Cronofy's per-member callback --------------------------------------------------------

    def member_callback(self, body: dict[str, Any]) -> dict[str, Any]:
        """The member's outcome for Cronofy. Nothing is stored unless the state is genuine, unused, and the
        org's Enterprise Connect is still active under the grant the member was asked with (refused
        otherwise: Forbidden, InvalidState); TryLater when the code could not be redeemed yet."""
        result = body.get("authorization") if isinstance(body, dict) else None
        if not isinstance(result, dict):
            raise MalformedRequest("expected {\"authorization\": {...}}", code="invalid_callback")
        try:
            claims = self.member_signer.verify(result.get("state"))
        except StateError:
            logger.info("enterprise connect member callback refused", extra={"reason": "invalid_state"})
            raise Forbidden("the state is not one this service issued", code="invalid_state") from None
        org_id, user_id, grant_id = claims["o"], claims["u"], claims["g"]
        log = {"org_id": org_id, "user_id": user_id}
        if not self.store.claim_member(org_id, user_id, grant_id, claims["n"], iso(utcnow())):
            org = self.store.get_org(org_id)
            ended = org is None or org.get("status") != "active" or org.get("grant_id") != grant_id
            code = "enterprise_connect_ended" if ended else "state_used"
            logger.info("enterprise connect member callback refused", extra=log | {"reason": code})
            raise InvalidState("this member authorization is no longer expected", code=code)
        if result.get("error") or not result.get("code"):
            raw = str(result.get("error") or "missing_code")
            reason = raw if raw in KNOWN_MEMBER_ERRORS else "authorization_failed"
            self._member_failed(org_id, user_id, reason)
            logger.info("enterprise connect member failed", extra=log | {"reason": reason})
            return {"status": "failed", "reason": reason}
        try:
            outcome = self._connect_member(org_id, user_id, str(result["code"]))
        except _CodeNotSent as error:
            # The code was never sent: the member can be claimed again by Cronofy's retried callback.
            self.store.update_member(org_id, user_id, expect_status="connecting", status="requested",
                                     nonce=claims["n"], updated_at=iso(utcnow()))
            raise TryLater("try again", retry_after=max(1, int(error.args[0] or 5))) from error
        except CronofyError as error:
            reason = "code_exchange_failed" if isinstance(error, InvalidGrant) else "calendar_service_unavailable"
            self._member_failed(org_id, user_id, reason)
            logger.warning("enterprise connect member failed", extra=log | {"reason": reason,
                                                                            "error": type(error).__name__})
            return {"status": "failed", "reason": reason}
        except Exception:
            # Anything else (e.g. a storage error) after the claim: the member shows why, and the admin can
            # ask again; the 5xx lets the platform see it (a repeated callback then finds it handled).
            logger.exception("enterprise connect member callback failed", extra=log)
            self._member_failed(org_id, user_id, "internal_error")
            raise
        return outcome

    def _member_failed(self, org_id: str, user_id: str, reason: str) -> None:
        self.store.update_member(org_id, user_id, status="failed", reason=reason, updated_at=iso(utcnow()))

    def _connect_member(self, org_id: str, user_id: str, code: str) -> dict[str, Any]:
        svc = self.connections
        try:
            grant = _patiently(lambda: svc.cronofy.exchange_code(code, self.member_callback_url),
                               PATIENCE_FOR_EXCHANGE_SECONDS)
        except CronofyRateLimited as error:  # our limiter refused, or Cronofy answered 429: not redeemed
            raise _CodeNotSent(error.retry_after) from error
        client = svc.cronofy.for_user(grant.token_set(), lambda fresh: None)
        channel_id = None
        profile = grant.linking_profile
        try:
            if self._known_elsewhere(user_id, org_id, svc.store.get_connection(user_id)):
                # Placed in another org since the request (e.g. they connected themselves there): nothing
                # of theirs is touched, and the grant this callback brought is revoked unless their
                # connection holds that account (Cronofy revokes by account).
                self.connections.abandon(client, None, grant.sub, user_id)
                self._member_failed(org_id, user_id, NOT_IN_ORG)
                logger.info("enterprise connect member refused", extra={"org_id": org_id, "user_id": user_id,
                                                                         "reason": NOT_IN_ORG})
                return {"status": "failed", "reason": NOT_IN_ORG}
            # userinfo, as the user's own connect does: the calendars and the account's time zone in one
            # request (without the zone, crew availability would read the member's hours in UTC).
            account = _patiently(client.userinfo)
            calendar = _primary_writable(calendars_of(account), profile.profile_id if profile else None)
            if calendar is None:
                self.connections.abandon(client, None, grant.sub, user_id)
                self._member_failed(org_id, user_id, "no_writable_calendar")
                return {"status": "failed", "reason": "no_writable_calendar"}
            channel_id = _patiently(lambda: client.create_channel(svc.channel_callback_url(user_id))).channel_id
            now = utcnow()
            conn = Connection(
                user_id=user_id, org_id=org_id, state=ConnectionState.SYNCING,
                provider="google" if profile and profile.provider_name == "google" else "microsoft",
                cronofy_sub=grant.sub, profile_id=profile.profile_id if profile else None,
                profile_name=profile.profile_name if profile else calendar.profile_name,
                calendar_id=calendar.calendar_id, calendar_name=calendar.calendar_name, channel_id=channel_id,
                connected_at=now, updated_at=now, connected_by=CONNECTED_BY, connection_id=uuid.uuid4().hex,
                timezone=known_zone(account.get("zoneinfo")), timezone_checked_at=now,
            )
            sealed = svc.vault.seal(user_id, client.tokens)
            for attempt in range(3):  # the code is spent: a transient storage error must not lose the member
                try:
                    # Only a connection this org's Enterprise Connect made is replaced: never a member's own
                    # (their grant would stay live with nothing stored to revoke it), never another org's.
                    svc.store.create_connection(conn, sealed, REPLACEABLE, replace_only_connected_by=CONNECTED_BY)
                    break
                except ConflictError:
                    raise
                except Exception:  # noqa: BLE001 - a transaction that failed applied nothing: safe to repeat
                    if attempt == 2:
                        raise
                    logger.warning("storing the member's connection failed; trying again", extra={"user_id": user_id})
                    time.sleep(0.2 * (attempt + 1))
        except ConflictError as error:
            # The member connected a calendar themselves meanwhile, or another user holds that account
            # (AccountInUse): theirs stays (its grant too: Cronofy revokes by account), ours is undone.
            reason = "account_in_use" if isinstance(error, AccountInUse) else "already_connected"
            current = svc.store.get_connection(user_id)
            if current is not None and current.org_id != org_id:  # another org's, since the check above
                reason = NOT_IN_ORG
            self.connections.abandon(client, channel_id, grant.sub, user_id)
            self._member_failed(org_id, user_id, reason)
            return {"status": "failed", "reason": reason}
        except Exception:
            self.connections.abandon(client, channel_id, grant.sub, user_id)
            raise
        conn = svc.on_calendar_selected(conn, None)
        svc.publisher.connection_changed(org_id, user_id, conn.state, conn.last_error)
        self.store.update_member(org_id, user_id, status="connected", reason=None, updated_at=iso(utcnow()),
                                 calendar_name=calendar.calendar_name)
        org = self.store.get_org(org_id)
        if org is None or org.get("status") != "active":
            # Enterprise Connect ended while this member was being connected: undo it the usual way.
            svc.request_disconnect(Caller(user_id=user_id, org_id=org_id))
            self.store.update_member(org_id, user_id, status="disconnected", reason="enterprise_connect_ended")
            return {"status": "disconnected", "reason": "enterprise_connect_ended"}
        logger.info("enterprise connect member connected", extra={"org_id": org_id, "user_id": user_id})
        return {"status": "connected"}

    # ---- status ----------------------------------------------------------------------------------

    def status(self, caller: Caller, org_id: str) -> dict[str, Any]:
        self._require_admin(caller, org_id)
        org = self.store.get_org(org_id)
        members = self.store.members(org_id)
        conns = self.connections.store.connections([m["user_id"] for m in members]) if members else {}
        rows = []
        for m in sorted(members, key=lambda r: r["user_id"]):
            conn = conns.get(m["user_id"])
            status = m["status"]
            if status == "connecting":
                status = "requested"
            if status == "connected" and (conn is None or conn.connected_by != CONNECTED_BY):
                status, m["reason"] = "disconnected", m.get("reason") or "disconnected_by_member_or_deactivated"
            rows.append({"user_id": m["user_id"], "email": m["email"], "status": status, "reason": m.get("reason"),
                         "requested_at": m.get("requested_at"), "updated_at": m.get("updated_at"),
                         "connection_state": conn.state.value if conn else ConnectionState.NOT_CONNECTED.value,
                         "calendar_name": conn.calendar_name if conn else None})
        view: dict[str, Any] = {"state": org["status"] if org else "not_connected", "members": rows}
        if org:
            view.update({k: org.get(k) for k in ("authorized_by", "authorized_at", "ended_at", "ended_by")})
        return view

    # ---- 5. ending -------------------------------------------------------------------------------

    def end(self, caller: Caller, org_id: str) -> dict[str, Any]:
        self._require_admin(caller, org_id)
        org = self._active(org_id)
        client = None
        try:
            client = self._service_account(org_id, org["grant_id"])
        except EnterpriseConnectNotActive:
            client = None
        try:
            self.store.end(org_id, org["grant_id"], caller.user_id, iso(utcnow()))
        except ConflictError as error:
            raise InvalidState("Enterprise Connect changed meanwhile; try again") from error
        if client is not None:
            try:  # the service account's authorization; the members' own ones go with their cleanup
                self.connections.cronofy.revoke(client.tokens)
            except CronofyError as error:
                logger.warning("could not revoke the service account", extra={"org_id": org_id,
                                                                               "error": type(error).__name__})
        svc = self.connections
        disconnecting = cancelled = 0
        members = self.store.members(org_id)
        conns = svc.store.connections([m["user_id"] for m in members]) if members else {}
        for m in members:
            user_id = m["user_id"]
            conn = conns.get(user_id)
            if m["status"] in ("requested", "connecting"):
                self.store.update_member(org_id, user_id, status="cancelled", reason="enterprise_connect_ended",
                                         nonce=None, updated_at=iso(utcnow()))
                cancelled += 1
            if conn is not None and conn.connected_by == CONNECTED_BY and conn.org_id == org_id:
                # The usual disconnect: state `disconnecting`, one cleanup job on the cleanup queue, whose
                # function removes the events, closes the channel and revokes within the shared limiter.
                svc.request_disconnect(Caller(user_id=user_id, org_id=org_id))
                self.store.update_member(org_id, user_id, status="disconnected", reason="enterprise_connect_ended",
                                         updated_at=iso(utcnow()))
                disconnecting += 1
        logger.info("enterprise connect ended", extra={"org_id": org_id, "disconnecting": disconnecting,
                                                        "cancelled": cancelled})
        return {"state": "ended", "disconnecting": disconnecting, "cancelled": cancelled}


def _refused(user_id: str, email: str) -> dict[str, Any]:
    """A member refused alone: 403 `not_in_org` in the request's answer (nothing is stored for them)."""
    return {"user_id": user_id, "email": email, "status": "refused", "reason": NOT_IN_ORG,
            "error": {"status": 403, "code": NOT_IN_ORG,
                      "message": "this user is not a member of this organization"}}


def _named_members(members: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(user id, normalised e-mail) of each member named, after checking the list as a whole."""
    if not 0 < len(members) <= MAX_MEMBERS:
        raise InvalidRequest(f"name 1..{MAX_MEMBERS} members per call")
    named: list[tuple[str, str]] = []
    seen_users, seen_emails = set(), set()
    for m in members:
        email = m["email"].strip().lower()
        if not _EMAIL.match(email):
            raise InvalidRequest(f"not an e-mail address: {m['email']!r}", code="invalid_email")
        if m["user_id"] in seen_users or email in seen_emails:
            raise InvalidRequest(f"{m['user_id']} / {email} is named twice", code="duplicate_member")
        seen_users.add(m["user_id"])
        seen_emails.add(email)
        named.append((m["user_id"], email))
    return named


def _delegated_access_refusal(client: CronofyUser, entries: list[dict[str, Any]]) -> str | None:
    """Ask Cronofy for delegated access to these members: None when it accepted, else the members' reason."""
    try:
        client.request_delegated_access(entries)
    except CronofyValidationError:
        return "rejected_by_calendar_service"
    except (InvalidGrant, CronofyAuthError):
        return "enterprise_connect_revoked"
    except (CronofyRateLimited, CronofyUnavailable):
        return "calendar_service_unavailable"
    except CronofyError:  # any other refusal (400, 403, ...): the members fail with a reason, not a 500
        return "rejected_by_calendar_service"
    return None


def _patiently(call, budget: float = PATIENCE_AFTER_EXCHANGE_SECONDS, sleep=time.sleep):
    """`call()`, waiting out the shared limiter's refusals (within `budget` seconds in all)."""
    waited = 0.0
    while True:
        try:
            return call()
        except CronofyRateLimited as error:
            wait = max(0.1, error.retry_after or 1.0)
            if waited + wait > budget:
                raise
            sleep(wait)
            waited += wait


def _primary_writable(calendars: list[Calendar], profile_id: str | None) -> Calendar | None:
    mine = [c for c in calendars if c.writable and (profile_id is None or c.profile_id == profile_id)]
    return next((c for c in mine if c.calendar_primary), mine[0] if mine else None)
