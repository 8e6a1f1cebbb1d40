"""The one Cronofy client (ARCHITECTURE §8, reference: shared/reference/cronofy-api.md).

Why not pycronofy: it drops `sub`/`linking_profile` from token responses, sends bulk-delete
`calendar_ids` as query parameters instead of the JSON body the API documents, counts only
200/202 as batch success, has no retry/backoff or Retry-After handling, and pulls in pytz. What
we need is a thin layer over one `requests.Session` with those rules right.

- One `requests.Session` per process (connection reuse), explicit timeouts.
- Data-center hosts from config; `next_page` links are followed only on the API host.
- 429/5xx/timeouts: retried with exponential backoff and full jitter, honouring Retry-After, but
  never sleeping past `max_sleep`: longer waits raise `CronofyRateLimited`/`CronofyUnavailable`
  so queue work is handed back to SQS instead of sleeping inside a Lambda.
- 401: refresh once and retry; a rotated refresh token is handed to `on_tokens_refreshed`.
- `invalid_grant` on refresh: `InvalidGrant`, which puts the connection in `needs_reauth`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from calsync.models import Calendar, TokenSet, utcnow
from calsync.observability import logger, metrics

DEFAULT_SCOPE = "read_account list_calendars read_events create_event delete_event"

# Who is waiting for the requests sent in this context: "queue" work (the default) goes first at the
# shared limiter; "interactive" (a person on a route) may not use the share reserved for queue work.
_priority: ContextVar[str] = ContextVar("cronofy_priority", default="queue")


@contextmanager
def priority(name: str) -> Iterator[None]:
    """Cronofy requests sent inside have this priority at the shared limiter (ratelimit.PRIORITIES)."""
    token = _priority.set(name)
    try:
        yield
    finally:
        _priority.reset(token)


# When the requests sent in this context must have finished (time.monotonic()), or None.
_deadline: ContextVar[float | None] = ContextVar("cronofy_deadline", default=None)
# What a route keeps of its Lambda's remaining time for its own work after Cronofy (DynamoDB, answer).
ROUTE_MARGIN_SECONDS = 3.0


@contextmanager
def interactive(seconds: float | None = None) -> Iterator[None]:
    """Cronofy requests sent inside are a person's (the web app's routes, the OAuth callback).

    `seconds`: how long they may take in all (the Lambda's remaining time less ROUTE_MARGIN_SECONDS).
    A wait or a retry that would pass it fails at once (CronofyRateLimited / CronofyUnavailable), so
    the route still answers, with a clear error, before Lambda's or API Gateway's timeout cuts it off
    with a bare 5xx (the OAuth callback must always redirect)."""
    token = _deadline.set(time.monotonic() + max(seconds, 0.0) if seconds is not None else None)
    try:
        with priority("interactive"):
            yield
    finally:
        _deadline.reset(token)


def route_seconds(context: Any) -> float | None:
    """The Cronofy time a route has: its Lambda's remaining time less ROUTE_MARGIN_SECONDS."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return remaining() / 1000 - ROUTE_MARGIN_SECONDS if remaining is not None else None


def _time_left() -> float | None:
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def background():
    """Cronofy requests sent inside may wait behind calendar writes (reads after a notification)."""
    return priority("background")


# How long one request sent in this context may wait at the shared limiter (None: the client's own
# max_limiter_wait, short: queue work hands its message back to SQS rather than holding a Lambda).
_max_wait: ContextVar[float | None] = ContextVar("cronofy_max_wait", default=None)


@contextmanager
def patient(seconds: float, until: float | None = None) -> Iterator[None]:
    """Cronofy requests sent inside wait in line behind calendar writes (priority "background") for up to
    `seconds` each, and never past `until` (time.monotonic()), instead of failing fast: work with nothing
    to hand back and a deadline of hours, not seconds (the reconciler's overdue checks), takes its turn
    among the reads behind notifications."""
    token = _max_wait.set(seconds)
    deadline = _deadline.set(until) if until is not None else None
    try:
        with background():
            yield
    finally:
        _max_wait.reset(token)
        if deadline is not None:
            _deadline.reset(deadline)
BATCH_LIMIT = 50
# Enterprise Connect: what the service account may do, and at most how many members one delegated-access
# request names (the offline reference's limit; Cronofy's docs give none, see calsync/enterprise.py).
SERVICE_ACCOUNT_SCOPE = "service_account/accounts/manage"
DELEGATED_ACCESS_LIMIT = 50


# ---- errors ------------------------------------------------------------------------------------


class CronofyError(Exception):
    def __init__(self, message: str, status: int | None = None, body: Any = None):
        super().__init__(message)
        self.status = status
        self.body = body


class InvalidGrant(CronofyError):
    """The authorization is gone (revoked, expired code, used code): the user must reconnect."""


class CronofyAuthError(CronofyError):
    """401 even after a refresh."""


class CronofyValidationError(CronofyError):
    """422: the request is wrong; retrying will not help."""


class CronofyNotFound(CronofyError):
    pass


class ProfileDisconnected(CronofyError):
    """423: the calendar profile lost its link to the provider (the user must relink it), so Cronofy
    refuses writes to its calendars. The offline reference marks the 423 text unconfirmed; the Ruby
    SDK's AccountLockedError is the same status."""


class CronofyInvalidResponse(CronofyError):
    """Cronofy answered success with a body we cannot use."""


class CronofyRateLimited(CronofyError):
    def __init__(self, message: str, retry_after: float | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class CronofyUnavailable(CronofyError):
    """5xx, timeouts or connection errors that outlasted the retries."""


# ---- response models ---------------------------------------------------------------------------


class LinkingProfile(BaseModel):
    model_config = ConfigDict(extra="ignore")
    provider_name: str
    provider_service: str | None = None
    profile_id: str
    profile_name: str


class TokenGrant(BaseModel):
    """What a code exchange gives: the tokens and who they belong to."""

    model_config = ConfigDict(extra="ignore")
    access_token: str = Field(repr=False)
    refresh_token: str = Field(repr=False)
    expires_in: int
    scope: str = ""
    sub: str
    linking_profile: LinkingProfile | None = None

    def token_set(self) -> TokenSet:
        return TokenSet(
            access_token=self.access_token,
            refresh_token=self.refresh_token,
            expires_at=utcnow() + timedelta(seconds=self.expires_in),
            scope=self.scope,
        )


class ServiceAccountGrant(BaseModel):
    """What redeeming an Enterprise Connect code gives: the service account's tokens (no `sub`)."""

    model_config = ConfigDict(extra="ignore")
    access_token: str = Field(repr=False)
    refresh_token: str = Field(repr=False)
    expires_in: int
    scope: str = ""
    service_account_id: str | None = None

    def token_set(self) -> TokenSet:
        return TokenSet(access_token=self.access_token, refresh_token=self.refresh_token,
                        expires_at=utcnow() + timedelta(seconds=self.expires_in), scope=self.scope)


class Channel(BaseModel):
    model_config = ConfigDict(extra="ignore")
    channel_id: str
    callback_url: str
    filters: dict[str, Any] = {}


class BatchItemResult(BaseModel):
    status: int
    data: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        # pycronofy's bug (status % 100 != 2) is why this is a range check.
        return 200 <= self.status < 300


# ---- the client --------------------------------------------------------------------------------


class RetryPolicy(BaseModel):
    max_attempts: int = 4
    base_delay: float = 0.25
    max_delay: float = 4.0
    max_sleep: float = 5.0  # never sleep longer than this at once: hand the work back instead


_RETRYABLE = {429, 500, 502, 503, 504}


class CronofyApp:
    """Application-level calls (OAuth) and the factory for per-user clients."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        api_base_url: str,
        app_base_url: str,
        timeout: float = 8.0,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        limiter=None,
        max_limiter_wait: float = 1.0,
    ):
        self.client_id = client_id
        self._secret = client_secret
        self.api_base_url = api_base_url.rstrip("/")
        self.app_base_url = app_base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = "solarnexus-calendar-sync/1"
        self._sleep = sleep
        self.limiter = limiter  # RateLimiter shared by every function, or None
        self.max_limiter_wait = max_limiter_wait
        self.requests_sent = 0  # for request budgets (the reconciler)

    def __repr__(self) -> str:  # never show the secret
        return f"CronofyApp(client_id={self.client_id!r}, api={self.api_base_url!r})"

    # -- transport --

    def send(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool = True,
        bearer: str | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One logical request with retries. Returns any response that is not retryable."""
        headers = kwargs.pop("headers", {})
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        attempt = 0
        while True:
            attempt += 1
            self._take_token(method, url)
            left = _time_left()
            if left is not None and left <= 0:
                raise CronofyUnavailable(f"{method} {urlsplit(url).path}: no time left to wait for Cronofy")
            timeout = self.timeout if left is None else min(self.timeout, left)
            self.requests_sent += 1
            try:
                resp = self.session.request(method, url, headers=headers, timeout=timeout, **kwargs)
            except (requests.Timeout, requests.ConnectionError) as error:
                # A lost response to a non-idempotent call (code exchange) must not be replayed.
                delay = self._backoff(attempt, None)
                left = _time_left()
                if not idempotent or attempt >= self.retry.max_attempts or (left is not None and delay >= left):
                    raise CronofyUnavailable(f"{method} {urlsplit(url).path}: {type(error).__name__}") from error
                self._sleep(delay)
                continue
            if resp.status_code not in _RETRYABLE:
                return resp
            retry_after = _retry_after(resp)
            delay = self._backoff(attempt, retry_after)
            if resp.status_code == 429:
                metrics.add_metric(name="CronofyThrottled", unit="Count", value=1)
            if resp.status_code == 429 and self.limiter is not None:
                self.limiter.penalize(delay)  # everyone backs off, not just this caller
            left = _time_left()
            out_of_time = left is not None and delay >= left
            if attempt >= self.retry.max_attempts or delay > self.retry.max_sleep or out_of_time:
                path = urlsplit(url).path
                if resp.status_code == 429:
                    raise CronofyRateLimited(f"{method} {path}: 429", retry_after=retry_after, status=429)
                raise CronofyUnavailable(f"{method} {path}: {resp.status_code}", status=resp.status_code)
            self._sleep(delay)

    def _take_token(self, method: str, url: str) -> None:
        """Wait for the shared limiter (short waits only); longer waits hand the work back."""
        if self.limiter is None:
            return
        waited = 0.0
        while True:
            wait = self.limiter.acquire(1, priority=_priority.get())
            if wait <= 0:
                return
            left = _time_left()
            patience = _max_wait.get()
            if waited + wait > (self.max_limiter_wait if patience is None else patience) or (
                    left is not None and wait >= left):
                raise CronofyRateLimited(f"{method} {urlsplit(url).path}: rate limit reached", retry_after=wait)
            self._sleep(wait)
            waited += wait

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        ceiling = min(self.retry.max_delay, self.retry.base_delay * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)

    # -- OAuth --

    def authorization_url(
        self, redirect_uri: str, state: str, provider_name: str | None, scope: str = DEFAULT_SCOPE
    ) -> str:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            # Without this, accounts authorized in one browser (an office PC) are merged.
            "avoid_linking": "true",
        }
        if provider_name:
            params["provider_name"] = provider_name
        return f"{self.app_base_url}/oauth/authorize?{urlencode(params)}"

    def _token_call(self, body: dict[str, str], idempotent: bool) -> dict[str, Any]:
        body = {"client_id": self.client_id, "client_secret": self._secret, **body}
        resp = self.send("POST", f"{self.api_base_url}/oauth/token", json=body, idempotent=idempotent)
        if resp.status_code == 200:
            data = _json_or_none(resp)
            if data is None:
                raise CronofyInvalidResponse("the token endpoint answered 200 without a JSON body", status=200)
            return data
        error = _json_or_none(resp)
        code = error.get("error") if isinstance(error, dict) else None
        if resp.status_code == 400 and code in ("invalid_grant", None):
            raise InvalidGrant("invalid_grant", status=400, body=error)
        raise CronofyError(f"token endpoint answered {resp.status_code} ({code})", status=resp.status_code)

    def exchange_code(self, code: str, redirect_uri: str) -> TokenGrant:
        data = self._token_call(
            {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}, idempotent=False
        )
        return self._grant_or_revoke(TokenGrant, data)

    def _grant_or_revoke[G: BaseModel](self, model: type[G], data: Any) -> G:
        """A code exchange's answer as `model`. When it cannot be used, the code is spent and an
        authorization exists at Cronofy that nothing will ever store: it is revoked rather than left
        behind, and the error says nothing of the body (pydantic's message quotes the input: a token)."""
        try:
            return model.model_validate(data)
        except ValidationError as error:  # its text quotes the input: only the failing fields' names are kept
            fields = sorted({str(e["loc"][0]) for e in error.errors(include_input=False, include_url=False)
                             if e["loc"]})
        revoked = False
        for name in ("refresh_token", "access_token"):
            token = data.get(name) if isinstance(data, dict) else None
            if isinstance(token, str) and token and not revoked:
                try:
                    self._revoke_token(token)
                    revoked = True
                except CronofyError:
                    pass
        # `from None`: no chained ValidationError (with its quoted input) reaches a logged traceback.
        raise CronofyInvalidResponse(f"the token response is not valid (fields: {', '.join(fields) or '-'}; "
                                     f"{'revoked' if revoked else 'nothing revoked'})") from None

    def refresh(self, tokens: TokenSet) -> TokenSet:
        data = self._token_call(
            {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}, idempotent=False
        )
        return TokenSet(
            access_token=data["access_token"],
            # Cronofy may rotate the refresh token: always keep the one it returns.
            refresh_token=data.get("refresh_token") or tokens.refresh_token,
            expires_at=utcnow() + timedelta(seconds=int(data.get("expires_in", 3600))),
            scope=data.get("scope", tokens.scope),
        )

    def revoke(self, tokens: TokenSet) -> None:
        self._revoke_token(tokens.refresh_token)

    def _revoke_token(self, token: str) -> None:
        body = {"client_id": self.client_id, "client_secret": self._secret, "token": token}
        resp = self.send("POST", f"{self.api_base_url}/oauth/token/revoke", json=body)
        if resp.status_code >= 300:
            raise CronofyError(f"revoke answered {resp.status_code}", status=resp.status_code)

    # -- Enterprise Connect --

    def enterprise_connect_url(self, redirect_uri: str, state: str, delegated_scope: str = DEFAULT_SCOPE,
                               scope: str = SERVICE_ACCOUNT_SCOPE) -> str:
        """The domain administrator's authorization page (a different path from a user's)."""
        params = {"response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri,
                  "scope": scope, "delegated_scope": delegated_scope, "state": state}
        return f"{self.app_base_url}/enterprise_connect/oauth/authorize?{urlencode(params)}"

    def exchange_service_account_code(self, code: str, redirect_uri: str) -> ServiceAccountGrant:
        data = self._token_call(
            {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}, idempotent=False
        )
        return self._grant_or_revoke(ServiceAccountGrant, data)

    def for_user(self, tokens: TokenSet, on_tokens_refreshed: Callable[[TokenSet], None],
                 stored_tokens: Callable[[], TokenSet | None] | None = None) -> CronofyUser:
        return CronofyUser(self, tokens, on_tokens_refreshed, stored_tokens)


STALE_REFRESH_RECHECK_SECONDS = 1.0


class CronofyUser:
    """Calls made with one user's tokens."""

    def __init__(self, app: CronofyApp, tokens: TokenSet, on_tokens_refreshed: Callable[[TokenSet], None],
                 stored_tokens: Callable[[], TokenSet | None] | None = None):
        self.app = app
        self.tokens = tokens
        self._on_refreshed = on_tokens_refreshed
        self._stored = stored_tokens
        self.pages_read = 0  # pages the latest paged read (Read Events, free/busy) has taken so far

    def refresh(self) -> None:
        """New access token now (the rotated refresh token goes to `on_tokens_refreshed`).

        `invalid_grant` is believed only for the refresh token stored now: another invocation (or another
        client of this one) may have refreshed first, and Cronofy may rotate the refresh token, so the one
        this client holds is spent while the grant is fine. The stored tokens are read again (twice, a
        moment apart, for a refresh still on its way back) and, if they moved on, used instead: a
        valid access token as it is, an expired one refreshed once with the newer refresh token."""
        used = self.tokens
        try:
            self.tokens = self.app.refresh(used)
        except InvalidGrant:
            newer = self._newer_stored(used)
            if newer is None:
                raise
            self.tokens = newer
            if not newer.expired():
                return
            self.tokens = self.app.refresh(newer)
        self._on_refreshed(self.tokens)

    def _newer_stored(self, used: TokenSet) -> TokenSet | None:
        if self._stored is None:
            return None
        for attempt in range(2):
            if attempt:
                self.app._sleep(STALE_REFRESH_RECHECK_SECONDS)
            stored = self._stored()
            if stored is not None and stored.refresh_token != used.refresh_token:
                logger.info("refresh token was rotated by another refresh: using the stored one")
                return stored
        return None

    def request(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        url = path_or_url if path_or_url.startswith("http") else f"{self.app.api_base_url}{path_or_url}"
        if urlsplit(url).netloc != urlsplit(self.app.api_base_url).netloc:
            raise CronofyError(f"refusing to send a user token to {urlsplit(url).netloc}")
        if self.tokens.expired():
            self.refresh()
        resp = self.app.send(method, url, bearer=self.tokens.access_token, **kwargs)
        if resp.status_code == 401:
            self.refresh()
            resp = self.app.send(method, url, bearer=self.tokens.access_token, **kwargs)
            if resp.status_code == 401:
                raise CronofyAuthError("401 after refresh", status=401)
        return resp

    def _expect(self, resp: requests.Response, *ok: int) -> requests.Response:
        if resp.status_code in ok:
            return resp
        body = _json_or_none(resp)
        path = urlsplit(resp.request.url or "").path if resp.request is not None else ""
        message = f"{resp.request.method if resp.request is not None else ''} {path}: {resp.status_code}"
        if resp.status_code == 422:
            raise CronofyValidationError(message, status=422, body=body)
        if resp.status_code == 404:
            raise CronofyNotFound(message, status=404, body=body)
        if resp.status_code == 423:
            raise ProfileDisconnected(message, status=423, body=body)
        raise CronofyError(message, status=resp.status_code, body=body)

    # -- account --

    def calendars(self) -> list[Calendar]:
        resp = self._expect(self.request("GET", "/v1/calendars"), 200)
        return [Calendar.model_validate(c) for c in resp.json().get("calendars", [])]

    def userinfo(self) -> dict[str, Any]:
        return self._expect(self.request("GET", "/v1/userinfo"), 200).json()

    # -- events --

    def upsert_event(self, calendar_id: str, event: dict[str, Any]) -> None:
        self._expect(self.request("POST", f"/v1/calendars/{calendar_id}/events", json=event), 202)

    def delete_event(self, calendar_id: str, event_id: str) -> None:
        self._expect(
            self.request("DELETE", f"/v1/calendars/{calendar_id}/events", json={"event_id": event_id}), 202, 404
        )

    def bulk_delete(self, *, delete_all: bool = False, calendar_ids: list[str] | None = None) -> None:
        """Remove every event this application manages (all, or in some calendars): one request."""
        if delete_all == bool(calendar_ids):
            raise ValueError("pass exactly one of delete_all=True or calendar_ids")
        body: dict[str, Any] = {"delete_all": True} if delete_all else {"calendar_ids": calendar_ids}
        self._expect(self.request("DELETE", "/v1/events", json=body), 202)

    def _pages(self, path: str, params: dict[str, Any], key: str) -> Iterator[dict[str, Any]]:
        resp = self._expect(self.request("GET", path, params=params), 200)
        self.pages_read = 1
        while True:
            data = resp.json()
            yield from data.get(key, [])
            next_page = (data.get("pages") or {}).get("next_page")
            if not next_page:
                return
            resp = self._expect(self.request("GET", next_page), 200)
            self.pages_read += 1

    def read_events(self, **params: Any) -> Iterator[dict[str, Any]]:
        """Read Events across all pages. Booleans are sent as 'true'/'false'; tzid defaults to UTC."""
        return self._pages("/v1/events", _query(params), "events")

    def free_busy(self, **params: Any) -> Iterator[dict[str, Any]]:
        return self._pages("/v1/free_busy", _query(params), "free_busy")

    # -- channels --

    def create_channel(self, callback_url: str, filters: dict[str, Any] | None = None) -> Channel:
        body: dict[str, Any] = {"callback_url": callback_url}
        if filters:
            body["filters"] = filters
        resp = self._expect(self.request("POST", "/v1/channels", json=body), 200)
        return Channel.model_validate(resp.json()["channel"])

    def list_channels(self) -> list[Channel]:
        resp = self._expect(self.request("GET", "/v1/channels"), 200)
        return [Channel.model_validate(c) for c in resp.json().get("channels", [])]

    def close_channel(self, channel_id: str) -> None:
        self._expect(self.request("DELETE", f"/v1/channels/{channel_id}"), 202, 404)

    # -- Enterprise Connect (a service account's tokens) --

    def request_delegated_access(self, entries: list[dict[str, Any]]) -> None:
        """Ask for members' authorizations (1..50 `{email, callback_url, scope, state}`): 202, and Cronofy
        calls each `callback_url` later with a code or an error."""
        if not 0 < len(entries) <= DELEGATED_ACCESS_LIMIT:
            raise ValueError(f"a delegated-access request names 1..{DELEGATED_ACCESS_LIMIT} members, "
                             f"got {len(entries)}")
        body = {"service_account_authorizations": entries}
        self._expect(self.request("POST", "/v1/service_account_authorizations", json=body), 202)

    # -- batch --

    def batch(self, entries: list[dict[str, Any]]) -> list[BatchItemResult]:
        """Send up to 50 writes in one request; results are per item, in request order."""
        if not 0 < len(entries) <= BATCH_LIMIT:
            raise ValueError(f"a batch holds 1..{BATCH_LIMIT} entries, got {len(entries)}")
        resp = self._expect(self.request("POST", "/v1/batch", json={"batch": entries}), 207, 200)
        results = [BatchItemResult.model_validate(r) for r in resp.json().get("batch", [])]
        if len(results) != len(entries):
            raise CronofyError(f"batch answered {len(results)} results for {len(entries)} entries")
        return results


def _query(params: dict[str, Any]) -> dict[str, Any]:
    query: dict[str, Any] = {"tzid": "Etc/UTC"}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        if key == "calendar_ids":
            query["calendar_ids[]"] = list(value)
        else:
            query[key] = value
    return query


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _json_or_none(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None
