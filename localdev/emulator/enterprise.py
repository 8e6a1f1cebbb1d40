"""Enterprise Connect: a domain administrator authorizes a service account once; the application
then asks for delegated access to members' calendars by e-mail, and Cronofy calls back per member.

What Cronofy's documentation says (docs.cronofy.com, "Enterprise Connect", "Request Service Account
Authorization", "Request a Service Account Access Token", "Refresh a Service Account Token",
"Request User/Resource Access") and this emulator follows:

- the administrator is sent to `{app host}/enterprise_connect/oauth/authorize` with `response_type=code`,
  `client_id`, `redirect_uri`, `scope` (at least one `service_account/...` scope), `delegated_scope`
  (what members' authorizations may be granted) and `state`; back at `redirect_uri` with `code` and
  `state`, or `error=access_denied`;
- the code is redeemed at `/oauth/token` like a user's; the answer carries `service_account_id` (no
  `sub`, no `linking_profile`) and an access token that lasts 1800 s; refresh as usual;
- `POST /v1/service_account_authorizations` with the service account's bearer token, either one
  `{email, callback_url, scope, state}` or `{"service_account_authorizations": [...]}` (a mix of the two is
  not permitted), answers `202 Accepted` with no body; the result comes later as a request to
  `callback_url`; the code in it is redeemed at `/oauth/token` with `callback_url` as `redirect_uri`, and
  the member's tokens then behave like any user's;
- a service account cannot read calendars or events itself.

What the documentation does not say, and how this emulator decides it (see README.md):

- at most 50 entries per request (the offline reference, `shared/reference/cronofy-api.md` §8): more is
  a 422;
- the callback is `POST callback_url` with JSON `{"authorization": {"code", "state"}}` on success (as
  Cronofy's own PHP sample app reads it) and `{"authorization": {"error", "error_key",
  "error_description", "state"}}` on failure; `error` is `unknown_email` (no such mailbox in the
  service account's domain) or `not_in_domain` (another domain); the delivery carries the same
  `Cronofy-HMAC-SHA256` header as push notifications; callbacks are delivered one at a time, in order, by
  a worker of their own; an answer other than 2xx or 4xx (a 5xx, 429 or a transport error) is retried up to
  CALLBACK_ATTEMPTS times, after its `Retry-After` (seconds) or an exponential backoff; a 4xx is final;
- malformed entries (missing or invalid `email`, `callback_url` not absolute http(s), a `scope` that was not
  in the granted `delegated_scope`, an empty collection) are a synchronous 422 in Cronofy's error shape, and
  nothing of that request is processed;
- the service account belongs to one domain, chosen on the administrator's page; a member is in it when
  a seeded calendar account of the same provider family has an e-mail address at that domain;
- service-account tokens are refused (401) on every other `/v1` route;
- revoking a service account's refresh or access token (`/oauth/token/revoke`) ends it: its tokens stop
  working (the members' own authorizations are separate and stay valid until revoked themselves).
"""

from __future__ import annotations

import http.client
import json
import queue
import re
import secrets
import string
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape
from typing import Any

from . import oauth
from .errors import ApiError, EmulatorError, FieldErrors
from .model import KNOWN_SCOPES
from .notify import sign_body
from .state import EmulatorState
from .web import Request, Response, Router, html_response, json_response, redirect, redirect_with

SERVICE_ACCOUNT_SCOPES = frozenset({
    "service_account/accounts/manage",
    "service_account/accounts/unrestricted_access",
    "service_account/resources/manage",
    "service_account/resources/unrestricted_access",
})
SERVICE_ACCOUNT_TOKEN_TTL = 1800
MAX_AUTHORIZATIONS_PER_REQUEST = 50
CALLBACK_ATTEMPTS = 6
CALLBACK_TIMEOUT_SECONDS = 30.0
CODE_TTL = timedelta(minutes=10)
_EMAIL = re.compile(r"^[^@\s]+@([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)$")
# Provider families: a Google Workspace service account reaches Google accounts, a Microsoft 365 one
# Exchange accounts.
FAMILIES = {"google": {"google"}, "microsoft": {"exchange"}}
_ALNUM = string.ascii_letters + string.digits


def _rand(n: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


@dataclass
class Domain:
    domain: str
    provider: str  # google | microsoft
    admin_email: str


@dataclass
class ServiceAccount:
    service_account_id: str
    domain: str
    provider: str
    scope: str
    delegated_scope: str
    created: datetime
    revoked: bool = False
    requests: int = 0
    members_requested: list[str] = field(default_factory=list)


@dataclass
class _Code:
    code: str
    redirect_uri: str
    domain: str
    scope: str
    delegated_scope: str
    expires_at: datetime


@dataclass
class _Token:
    token: str
    service_account_id: str
    expires_at: datetime | None = None  # access tokens
    revoked: bool = False


class CallbackDeliverer:
    """Delivers the per-member callbacks on a worker thread of its own, retrying 5xx/429/transport errors.
    `pause()` holds deliveries back (tests: a callback that arrives after something else happened)."""

    def __init__(self, sign: Any, sleep: Any = time.sleep) -> None:
        self._sign = sign
        self._sleep = sleep
        self._queue: queue.Queue[tuple[str, bytes, dict[str, Any]] | None] = queue.Queue()
        self._cond = threading.Condition()
        self._pending = 0
        self._running = threading.Event()
        self._running.set()
        self.log: list[dict[str, Any]] = []
        self._thread: threading.Thread | None = None
        self._holding = False
        self._held: list[tuple[str, bytes]] = []

    def hold(self, holding: bool = True) -> None:
        """While holding, new callbacks are kept undelivered for `take_held()`: a caller delivers one
        itself (`make invoke` hands it to the function as an event)."""
        with self._cond:
            self._holding = holding

    def take_held(self) -> list[tuple[str, bytes]]:
        """The held callbacks (url, body), removed: they will not be delivered."""
        with self._cond:
            held, self._held = self._held, []
            return held

    def enqueue(self, url: str, body: bytes, meta: dict[str, Any]) -> None:
        with self._cond:
            if self._holding:
                self._held.append((url, body))
                return
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="cronofy-emulator-ec-callbacks", daemon=True)
                self._thread.start()
        self._queue.put((url, body, meta))

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def stop(self) -> None:
        self._running.set()
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            self._running.wait()
            url, body, meta = job
            entry = self._deliver(url, body, meta)
            with self._cond:
                self.log.append(entry)
                self._pending -= 1
                self._cond.notify_all()

    def _deliver(self, url: str, body: bytes, meta: dict[str, Any]) -> dict[str, Any]:
        entry: dict[str, Any] = {**meta, "url": url, "body": body.decode(), "attempts": 0, "status": None,
                                 "error": None, "history": []}
        for attempt in range(1, CALLBACK_ATTEMPTS + 1):
            entry["attempts"] = attempt
            retry_after: float | None = None
            try:
                status, retry_header = self._post(url, body)
                entry["status"], entry["error"] = status, None
                entry["history"].append(status)
                if status < 500 and status != 429:
                    return entry  # 2xx done; another 4xx is final
                entry["error"] = f"HTTP {status}"
                retry_after = float(retry_header) if retry_header and retry_header.isdigit() else None
            except Exception as exc:  # noqa: BLE001 - transport problems are recorded and retried
                entry["error"] = f"{type(exc).__name__}: {exc}"
                entry["history"].append(entry["error"])
            if attempt < CALLBACK_ATTEMPTS:
                self._sleep(min(30.0, retry_after if retry_after is not None else 0.5 * 2 ** (attempt - 1)))
        return entry

    def _post(self, url: str, body: bytes) -> tuple[int, str | None]:
        parts = urllib.parse.urlsplit(url)
        conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(parts.hostname, parts.port, timeout=CALLBACK_TIMEOUT_SECONDS)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request("POST", path, body=body, headers={
                "Content-Type": "application/json; charset=utf-8", "Cronofy-HMAC-SHA256": self._sign(body),
                "User-Agent": "Cronofy-Emulator/1.0"})
            response = conn.getresponse()
            response.read()
            return response.status, response.getheader("Retry-After")
        finally:
            conn.close()


class Enterprise:
    """Enterprise Connect state; every method runs under the emulator state's lock."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.lock: threading.RLock = state.lock
        self.deliveries = CallbackDeliverer(lambda body: sign_body(state.client_secret, body))
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.domains: dict[str, Domain] = {}
            self.service_accounts: dict[str, ServiceAccount] = {}
            self.codes: dict[str, _Code] = {}
            self.access: dict[str, _Token] = {}
            self.refresh: dict[str, _Token] = {}
            self.callbacks: list[dict[str, Any]] = []  # what was (to be) called back, for inspection
            self.deliveries.log.clear()

    # -- seeding -------------------------------------------------------------------------------------
    def add_domain(self, provider: str, domain: str, admin_email: str | None = None) -> dict[str, Any]:
        provider = (provider or "").lower()
        if provider not in FAMILIES:
            raise EmulatorError("Enterprise Connect domains are google (Workspace) or microsoft (Microsoft 365)")
        domain = (domain or "").lower().strip()
        if not _EMAIL.match(f"x@{domain}"):
            raise EmulatorError(f"not a domain name: {domain!r}")
        with self.lock:
            if domain in self.domains:
                raise EmulatorError(f"{domain} is already an Enterprise Connect domain", status=409)
            self.domains[domain] = Domain(domain, provider, admin_email or f"admin@{domain}")
            return {"domain": domain, "provider": provider, "admin_email": self.domains[domain].admin_email}

    # -- the administrator's page ------------------------------------------------------------------
    def validate_authorize(self, params: dict[str, str]) -> str | None:
        if params.get("response_type") != "code":
            return "response_type must be code"
        if params.get("client_id") != self.state.client_id:
            return "unknown client_id"
        parsed = urllib.parse.urlsplit(params.get("redirect_uri") or "")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            return "redirect_uri is missing or is not an absolute http(s) URL"
        scopes = (params.get("scope") or "").split()
        if not scopes:
            return "scope is required"
        if not set(scopes) <= SERVICE_ACCOUNT_SCOPES:
            return f"unknown scope: {' '.join(sorted(set(scopes) - SERVICE_ACCOUNT_SCOPES))}"
        delegated = (params.get("delegated_scope") or "").split()
        if not delegated:
            return "delegated_scope is required"
        if not set(delegated) <= KNOWN_SCOPES:
            return f"unknown delegated_scope: {' '.join(sorted(set(delegated) - KNOWN_SCOPES))}"
        return None

    def authorize_page(self, params: dict[str, str], error: str | None = None) -> str:
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{escape(params[name])}">'
            for name in ("response_type", "client_id", "redirect_uri", "scope", "delegated_scope", "state")
            if params.get(name) is not None
        )
        with self.lock:
            domains = sorted(self.domains.values(), key=lambda d: d.domain)
        choices = "".join(
            f'<label class="account"><input type="radio" name="domain" value="{escape(d.domain)}"'
            f'{" checked" if len(domains) == 1 else ""}> {escape(d.domain)} '
            f'({"Google Workspace" if d.provider == "google" else "Microsoft 365"}, signed in as '
            f'{escape(d.admin_email)})</label>'
            for d in domains
        ) or "<p>No Workspace or Microsoft 365 domain is set up in this emulator.</p>"
        scopes = "".join(f"<li>{escape(s)}</li>" for s in (params.get("delegated_scope") or "").split())
        body = (
            "<h1>Enterprise Connect</h1>"
            + (f'<p class="error" id="error">{escape(error)}</p>' if error else "")
            + "<p>As your domain's administrator, allow this application to connect the calendars of people "
            "in your organization, without each person's consent screen.</p>"
            f"<p>For each person it may:</p><ul class=\"scopes\">{scopes}</ul>"
            f'<form method="post" action="/enterprise_connect/oauth/authorize">{hidden}{choices}'
            '<p><button type="submit" name="decision" value="allow" id="allow">Allow</button>'
            '<button type="submit" name="decision" value="deny" id="deny">Deny</button></p></form>'
        )
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Cronofy emulator - Enterprise '
            'Connect</title><style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;}'
            '.account{display:block;padding:.5rem;border:1px solid #ccd;border-radius:4px;margin:.4rem 0;}'
            '.error{color:#a40000}.scopes li{font-family:monospace}button{padding:.5rem 1.4rem;'
            'margin-right:.5rem}</style></head>'
            f"<body>{body}</body></html>\n"
        )

    def issue_code(self, params: dict[str, str], domain: str) -> str:
        with self.lock:
            if domain not in self.domains:
                raise EmulatorError(f"unknown domain {domain}", status=404)
            code = _rand(32)
            self.codes[code] = _Code(code, params["redirect_uri"], domain, " ".join(params["scope"].split()),
                                     " ".join(params["delegated_scope"].split()),
                                     self.state.now() + CODE_TTL)
            return code

    # -- /oauth/token and revoke -----------------------------------------------------------------------
    def handles_token(self, form: dict[str, str]) -> bool:
        with self.lock:
            return form.get("code") in self.codes or form.get("refresh_token") in self.refresh

    def token_endpoint(self, form: dict[str, str]) -> dict[str, Any]:
        state = self.state
        with self.lock:
            oauth.check_client(state, form)
            grant_type = form.get("grant_type")
            if grant_type == "authorization_code":
                code = self.codes.pop(form.get("code") or "", None)  # spent whatever happens next
                if (code is None or state.now() >= code.expires_at
                        or code.redirect_uri != form.get("redirect_uri")):
                    raise ApiError(400, {"error": "invalid_grant"})
                domain = self.domains[code.domain]
                account = ServiceAccount(f"ser_{secrets.token_hex(12)}", domain.domain, domain.provider,
                                         code.scope, code.delegated_scope, state.now())
                self.service_accounts[account.service_account_id] = account
            elif grant_type == "refresh_token":
                old = self.refresh.get(form.get("refresh_token") or "")
                if old is None or old.revoked or self.service_accounts[old.service_account_id].revoked:
                    raise ApiError(400, {"error": "invalid_grant"})
                account = self.service_accounts[old.service_account_id]
                if state.rotate_refresh_tokens:
                    old.revoked = True
            else:
                raise ApiError(400, {"error": "unsupported_grant_type"})
            access = _Token(_rand(32), account.service_account_id,
                            state.now() + timedelta(seconds=SERVICE_ACCOUNT_TOKEN_TTL))
            self.access[access.token] = access
            if grant_type == "authorization_code" or state.rotate_refresh_tokens:
                refresh = _Token(_rand(32), account.service_account_id)
                self.refresh[refresh.token] = refresh
            else:
                refresh = old
            return oauth.token_response(access.token, SERVICE_ACCOUNT_TOKEN_TTL, refresh.token, account.scope,
                                        service_account_id=account.service_account_id)

    def handles_revoke(self, form: dict[str, str]) -> bool:
        with self.lock:
            token = form.get("token") or ""
            return token in self.refresh or token in self.access

    def revoke(self, form: dict[str, str]) -> None:
        with self.lock:
            oauth.check_client(self.state, form)
            token = form.get("token") or ""
            found = self.refresh.get(token) or self.access.get(token)
            if found is None:
                return
            self.service_accounts[found.service_account_id].revoked = True
            for tok in (*self.access.values(), *self.refresh.values()):
                if tok.service_account_id == found.service_account_id:
                    tok.revoked = True

    def is_service_account_token(self, authorization: str | None) -> bool:
        value = (authorization or "").removeprefix("Bearer ").strip()
        with self.lock:
            return value in self.access

    # -- POST /v1/service_account_authorizations ----------------------------------------------------------
    def _authenticate(self, authorization: str | None) -> ServiceAccount:
        value = (authorization or "").removeprefix("Bearer ").strip()
        token = self.access.get(value)
        if token is None or token.revoked or self.service_accounts[token.service_account_id].revoked:
            raise ApiError(401, {"error": "invalid_token",
                                 "error_description": "the access token is not recognised or has been revoked"})
        if token.expires_at is not None and self.state.now() >= token.expires_at:
            raise ApiError(401, {"error": "invalid_token", "error_description": "the access token has expired"})
        return self.service_accounts[token.service_account_id]

    def authorizations(self, authorization: str | None, data: Any) -> None:
        with self.lock:
            account = self._authenticate(authorization)
            if "service_account/accounts/manage" not in account.scope.split():
                raise ApiError(403, {"error": "insufficient_scope",
                                     "error_description": "service_account/accounts/manage was not granted"})
            if not isinstance(data, dict):
                errs = FieldErrors()
                errs.required("body", "a JSON object is required")
                errs.raise_if_any()
            errs = FieldErrors()
            entries, prefix = _entries(data)
            granted = set(account.delegated_scope.split())
            checked: list[dict[str, str]] = []
            for n, entry in enumerate(entries):
                member = _check_entry(entry, f"{prefix}[{n}]" if prefix else "", granted, errs)
                if member is not None:
                    checked.append(member)
            errs.raise_if_any()
            account.requests += 1
            for entry in checked:
                account.members_requested.append(entry["email"])
                self._call_back(account, entry)

    def _call_back(self, account: ServiceAccount, entry: dict[str, str]) -> None:
        email = entry["email"]
        domain = email.rsplit("@", 1)[1].lower()
        result: dict[str, Any] = {}
        if domain != account.domain:
            result = {"error": "not_in_domain", "error_key": "errors.not_in_domain",
                      "error_description": f"{email} is not in {account.domain}"}
        else:
            profile = next((p for p in self.state.profiles.values()
                            if p.email.lower() == email.lower() and p.provider_name in FAMILIES[account.provider]),
                           None)
            if profile is None:
                result = {"error": "unknown_email", "error_key": "errors.unknown_email",
                          "error_description": f"no mailbox {email} in {account.domain}"}
            else:
                result = {"code": oauth.issue_code(self.state, profile.profile_id, entry["callback_url"],
                                                            entry["scope"])}
        if entry.get("state") is not None:
            result["state"] = entry["state"]
        body = json.dumps({"authorization": result}, separators=(",", ":")).encode()
        record = {"service_account_id": account.service_account_id, "email": email, "url": entry["callback_url"],
                  "outcome": "code" if "code" in result else result["error"]}
        self.callbacks.append(record)
        self.deliveries.enqueue(entry["callback_url"], body,
                                {"type": "service_account_authorization", "email": email,
                                 "service_account_id": account.service_account_id})

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return {
                "domains": [dict(d.__dict__) for d in self.domains.values()],
                "service_accounts": [
                    {"service_account_id": a.service_account_id, "domain": a.domain, "provider": a.provider,
                     "scope": a.scope, "delegated_scope": a.delegated_scope, "revoked": a.revoked,
                     "requests": a.requests, "members_requested": list(a.members_requested)}
                    for a in self.service_accounts.values()
                ],
                "callbacks": [dict(c) for c in self.callbacks],
            }


def _entries(data: dict[str, Any]) -> tuple[list[Any], str | None]:
    """The entries of a service account authorization request (single or collection format) and
    the collection's field name (None: the single format)."""
    if "service_account_authorizations" not in data:
        return [data], None
    name = "service_account_authorizations"
    errs = FieldErrors()
    if any(k in data for k in ("email", "callback_url", "scope", "state")):
        errs.invalid(name, "a mix of the single and the collection formats is not permitted")
        errs.raise_if_any()
    entries = data[name]
    if not isinstance(entries, list) or not entries:
        errs.invalid(name, "must be a non-empty array")
        errs.raise_if_any()
    if len(entries) > MAX_AUTHORIZATIONS_PER_REQUEST:
        errs.invalid(name, f"at most {MAX_AUTHORIZATIONS_PER_REQUEST} entries per request")
        errs.raise_if_any()
    return entries, name


def _check_entry(entry: Any, at: str, granted: set[str], errs: FieldErrors) -> dict[str, str] | None:
    """One member entry, checked; returned cleaned while no entry so far had an error."""
    if not isinstance(entry, dict):
        errs.invalid(at, "must be an object")
        return None
    where = f"{at}." if at else ""
    email, url, scope, st = (entry.get(k) for k in ("email", "callback_url", "scope", "state"))
    if not isinstance(email, str) or not email:
        errs.required(f"{where}email")
    elif not _EMAIL.match(email):
        errs.invalid(f"{where}email", "must be an e-mail address")
    parsed = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    if not url:
        errs.required(f"{where}callback_url")
    elif parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
        errs.invalid(f"{where}callback_url", "must be an absolute http or https URL")
    if not isinstance(scope, str) or not scope.split():
        errs.required(f"{where}scope")
    elif not set(scope.split()) <= granted:
        errs.invalid(f"{where}scope", "must be within the delegated_scope the administrator granted")
    if st is not None and not isinstance(st, str):
        errs.invalid(f"{where}state", "must be a string")
    if errs:
        return None
    return {"email": email, "callback_url": url, "scope": " ".join(scope.split()), "state": st}


def add_routes(router: Router, enterprise: Enterprise) -> None:
    """The administrator's page (app host) and the delegated-access endpoint (API host)."""

    def authorize_get(request: Request) -> Response:
        params = {k: v[0] for k, v in request.query.items() if v}
        problem = enterprise.validate_authorize(params)
        if problem:
            return html_response(400, f"<!DOCTYPE html><h1>Authorization request rejected</h1>"
                                      f'<p class="error" id="error">{escape(problem)}</p>')
        return html_response(200, enterprise.authorize_page(params))

    def authorize_post(request: Request) -> Response:
        params = dict(urllib.parse.parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        problem = enterprise.validate_authorize(params)
        if problem:
            return html_response(400, f'<!DOCTYPE html><p class="error" id="error">{escape(problem)}</p>')
        if params.get("decision") == "deny":
            denied = {"error": "access_denied", "state": params.get("state")}
            return redirect(redirect_with(params["redirect_uri"], denied))
        if params.get("decision") != "allow":
            return html_response(400, enterprise.authorize_page(params, "Choose Allow or Deny."))
        domain = params.get("domain") or ""
        if domain not in enterprise.domains:
            return html_response(400, enterprise.authorize_page(params, "Choose your domain."))
        code = enterprise.issue_code(params, domain)
        return redirect(redirect_with(params["redirect_uri"], {"code": code, "state": params.get("state")}))

    def authorizations(request: Request) -> Response:
        enterprise.authorizations(request.headers.get("Authorization"), request.json())
        return json_response(202)

    router.add("GET", "/enterprise_connect/oauth/authorize", authorize_get)
    router.add("POST", "/enterprise_connect/oauth/authorize", authorize_post)
    router.add("POST", "/v1/service_account_authorizations", authorizations)
