"""HTTP front end: request parsing, routing, faults, rate limiting and the request log."""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from . import api, enterprise
from .consent import render_consent, render_error, render_relink
from .errors import ApiError, EmulatorError, single_error
from .state import AUTHORIZE_PROVIDERS, KNOWN_SCOPES

if TYPE_CHECKING:
    from .emulator import CronofyEmulator

JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"
MAX_BODY = 5 * 1024 * 1024
# Paths the application rate limit does not count (browser pages, not API calls).
UNMETERED_PREFIXES = ("/oauth/authorize", "/relink/", "/_emulator", "/enterprise_connect/oauth/authorize")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: bytes
    sub: str | None = None

    def json(self) -> Any:
        """The JSON body, ``None`` when there is no body; 415/422 on a non-JSON body."""
        if not self.body.strip():
            return None
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(
                415,
                {
                    "error": "unsupported_media_type",
                    "error_description": "send JSON with Content-Type: application/json",
                },
            )
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise single_error(422, "body", "errors.invalid", "the request body is not valid JSON") from None

    def form(self) -> dict[str, str]:
        """A form-encoded or JSON body as a flat dict of strings (the OAuth endpoints take both)."""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype == "application/json":
            try:
                data = json.loads(self.body.decode("utf-8") or "{}")
            except (UnicodeDecodeError, ValueError):
                raise ApiError(
                    400, {"error": "invalid_request", "error_description": "invalid JSON"}
                ) from None
            if not isinstance(data, dict):
                raise ApiError(400, {"error": "invalid_request", "error_description": "expected an object"})
            return {
                k: str(v) for k, v in data.items() if isinstance(v, str | int) and not isinstance(v, bool)
            }
        try:
            pairs = urllib.parse.parse_qsl(self.body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise ApiError(400, {"error": "invalid_request"}) from None
        return dict(pairs)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


def json_response(status: int, data: Any = None, headers: dict[str, str] | None = None) -> Response:
    body = b"" if data is None else json.dumps(data).encode("utf-8")
    return Response(status, body, JSON_TYPE, dict(headers or {}))


def html_response(status: int, page: str) -> Response:
    return Response(status, page.encode("utf-8"), HTML_TYPE)


def redirect(location: str) -> Response:
    return Response(302, b"", HTML_TYPE, {"Location": location})


Handler = Callable[..., Response]


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")
        for existing, methods in self._routes:
            if existing.pattern == regex.pattern:
                methods[method] = handler
                return
        self._routes.append((regex, {method: handler}))

    def dispatch(self, request: Request) -> Response:
        for regex, methods in self._routes:
            match = regex.match(request.path)
            if not match:
                continue
            handler = methods.get(request.method)
            if handler is None:
                return json_response(
                    405, {"error": "method_not_allowed"}, {"Allow": ", ".join(sorted(methods))}
                )
            args = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
            return handler(request, **args)
        return json_response(404, {"error": "not_found", "error_description": f"no route for {request.path}"})


# ------------------------------------------------------------------------------------------------
# API + OAuth routes
# ------------------------------------------------------------------------------------------------


class _ConsentError(Exception):
    pass


def _redirect_with(uri: str, params: dict[str, str | None]) -> str:
    parts = urllib.parse.urlsplit(uri)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def build_api_router(emu: CronofyEmulator) -> Router:
    state = emu.state
    router = Router()

    def authed(fn: Callable[..., tuple[int, Any]], arg: str | None = None) -> Handler:
        def handler(request: Request, **params: str) -> Response:
            account, token = state.authenticate(request.headers.get("Authorization"))
            request.sub = account.sub
            extra: list[Any] = list(params.values())
            if arg == "json":
                extra.append(request.json())
            elif arg == "query":
                extra.append(request.query)
            status, body = fn(state, account, token, *extra)
            return json_response(status, body)

        return handler

    # -- OAuth ---------------------------------------------------------------------------------
    def validate_authorize(params: dict[str, str]) -> dict[str, str]:
        if params.get("response_type") != "code":
            raise _ConsentError("response_type must be code")
        if params.get("client_id") != emu.client_id:
            raise _ConsentError("unknown client_id")
        redirect_uri = params.get("redirect_uri") or ""
        parsed = urllib.parse.urlsplit(redirect_uri)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise _ConsentError("redirect_uri is missing or is not an absolute http(s) URL")
        scopes = (params.get("scope") or "").split()
        if not scopes:
            raise _ConsentError("scope is required")
        unknown = [s for s in scopes if s not in KNOWN_SCOPES]
        if unknown:
            raise _ConsentError(f"unknown scope: {' '.join(unknown)}")
        # An empty provider_name means none (pycronofy's user_auth_link always sends the
        # parameter, empty by default); "False"/"True" are booleans too (pycronofy sends them).
        provider = params.get("provider_name")
        if provider == "":
            params.pop("provider_name")
            provider = None
        if provider is not None and provider not in AUTHORIZE_PROVIDERS:
            raise _ConsentError(f"unknown provider_name {provider}")
        if params.get("avoid_linking") is not None and params["avoid_linking"].lower() not in ("true", "false"):
            raise _ConsentError("avoid_linking must be true or false")
        return params

    def authorize_get(request: Request) -> Response:
        params = {k: v[0] for k, v in request.query.items() if v}
        try:
            validate_authorize(params)
        except _ConsentError as exc:
            return html_response(400, render_error(str(exc)))
        return html_response(
            200, render_consent(params, state.profiles_for_provider(params.get("provider_name")))
        )

    def authorize_post(request: Request) -> Response:
        params = dict(urllib.parse.parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        try:
            validate_authorize(params)
        except _ConsentError as exc:
            return html_response(400, render_error(str(exc)))
        decision = params.get("decision")
        if decision == "deny":
            return redirect(
                _redirect_with(
                    params["redirect_uri"], {"error": "access_denied", "state": params.get("state")}
                )
            )
        if decision != "allow":
            return html_response(400, render_error("decision must be allow or deny"))
        candidates = state.profiles_for_provider(params.get("provider_name"))
        chosen = params.get("profile_id")
        if chosen:
            if chosen not in {p.profile_id for p in candidates}:
                page = render_consent(params, candidates, error="Choose one of the listed accounts.")
                return html_response(400, page)
        elif len(candidates) == 1:
            chosen = candidates[0].profile_id
        else:
            message = (
                "Choose the account to connect." if candidates else "No account is available to connect."
            )
            return html_response(400, render_consent(params, candidates, error=message))
        code = state.issue_code(chosen, params["redirect_uri"], params["scope"])
        return redirect(_redirect_with(params["redirect_uri"], {"code": code, "state": params.get("state")}))

    def token(request: Request) -> Response:
        form = request.form()
        if emu.enterprise.handles_token(form):  # a service account's code or refresh token
            return json_response(200, emu.enterprise.token_endpoint(form), {"Cache-Control": "no-store"})
        body, sub = state.token_endpoint(form)
        request.sub = sub
        return json_response(200, body, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def revoke(request: Request) -> Response:
        form = request.form()
        if emu.enterprise.handles_revoke(form):
            emu.enterprise.revoke(form)
            return json_response(200)
        request.sub = state.revoke_endpoint(form)
        return json_response(200)

    def relink_get(request: Request, provider: str) -> Response:
        return html_response(200, render_relink(_relink_profiles(provider, request)))

    def relink_post(request: Request, provider: str) -> Response:
        profiles = _relink_profiles(provider, request)
        for profile in profiles:
            emu.reconnect_profile(profile.profile_id)
        return html_response(200 if profiles else 404, render_relink(profiles, done=bool(profiles)))

    def _relink_profiles(provider: str, request: Request) -> list[Any]:
        email = (request.param("email") or "").lower()
        with state.lock:
            return [
                p for p in state.profiles.values() if p.provider_name == provider and p.email.lower() == email
            ]

    router.add("GET", "/oauth/authorize", authorize_get)
    router.add("POST", "/oauth/authorize", authorize_post)
    router.add("POST", "/oauth/token", token)
    router.add("POST", "/oauth/token/revoke", revoke)
    router.add("GET", "/relink/{provider}", relink_get)
    router.add("POST", "/relink/{provider}", relink_post)

    # -- /v1 -----------------------------------------------------------------------------------
    router.add("GET", "/v1/userinfo", authed(api.userinfo))
    router.add("GET", "/v1/profiles", authed(api.profiles))
    router.add("POST", "/v1/profiles/{profile_id}/revoke", authed(api.revoke_profile))
    router.add("GET", "/v1/account", authed(api.account_info))
    router.add("GET", "/v1/calendars", authed(api.calendars))
    router.add("POST", "/v1/calendars/{calendar_id}/events", authed(api.upsert_event, "json"))
    router.add("DELETE", "/v1/calendars/{calendar_id}/events", authed(api.delete_event, "json"))
    router.add("GET", "/v1/events", authed(api.read_events, "query"))
    router.add("DELETE", "/v1/events", authed(api.bulk_delete, "json"))
    router.add(
        "GET", "/v1/events/pages/{token}", authed(lambda s, a, t, tok: api.read_page(s, a, "events", tok))
    )
    router.add("GET", "/v1/free_busy", authed(api.free_busy, "query"))
    router.add(
        "GET",
        "/v1/free_busy/pages/{token}",
        authed(lambda s, a, t, tok: api.read_page(s, a, "free_busy", tok)),
    )
    router.add("GET", "/v1/channels", authed(api.list_channels))
    router.add("POST", "/v1/channels", authed(api.create_channel, "json"))
    router.add("DELETE", "/v1/channels/{channel_id}", authed(api.close_channel))
    router.add("POST", "/v1/batch", authed(api.batch, "json"))
    enterprise.add_routes(router, emu)  # Enterprise Connect (enterprise.py)
    return router


# ------------------------------------------------------------------------------------------------
# The server
# ------------------------------------------------------------------------------------------------


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 256  # the default of 5 drops SYNs under concurrent clients (1 s stalls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut kept-alive connections so no handler thread answers after the emulator stopped."""
        with self._open_lock:
            conns = list(self._open)
            self._open.clear()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _error_response(exc: ApiError) -> Response:
    return json_response(exc.status, exc.body, exc.headers)


def make_handler(
    emu: CronofyEmulator, api_router: Router, control_router: Router
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "CronofyEmulator/1.0"
        sys_version = ""
        timeout = 60  # idle keep-alive connections are closed after this
        disable_nagle_algorithm = True
        wbufsize = 64 * 1024  # headers and body leave in one write (no Nagle/delayed-ACK stall)

        def log_message(self, format: str, *args: Any) -> None:
            if emu.verbose:
                super().log_message(format, *args)

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def do_DELETE(self) -> None:
            self._handle()

        def do_PUT(self) -> None:
            self._handle()

        def do_PATCH(self) -> None:
            self._handle()

        def _read_body(self) -> bytes:
            length = self.headers.get("Content-Length")
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            if not length:
                return b""
            n = int(length)
            if n > MAX_BODY:
                raise ValueError("request body too large")
            return self.rfile.read(n)

        def _handle(self) -> None:
            started = time.time()
            split = urllib.parse.urlsplit(self.path)
            request = Request(
                method=self.command,
                path=split.path,
                query=urllib.parse.parse_qs(split.query, keep_blank_values=True),
                headers=self.headers,
                body=b"",
            )
            fault_name = None
            try:
                request.body = self._read_body()
                if request.path == "/_emulator" or request.path.startswith("/_emulator/"):
                    self._send(self._run(control_router, request, control=True))
                    return
                fault = emu.faults.take(request.method, request.path)
                response: Response | None = None
                if fault is not None:
                    fault_name = fault.mode
                    if fault.latency_ms:
                        time.sleep(fault.latency_ms / 1000.0)
                    if fault.mode == "drop":
                        response = Response(0, drop=True)
                    elif fault.mode == "status" and fault.status is not None:
                        headers = (
                            {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                        )
                        phrase = (
                            HTTPStatus(fault.status).phrase
                            if fault.status in HTTPStatus._value2member_map_
                            else "Error"
                        )
                        response = json_response(
                            fault.status,
                            {
                                "error": phrase.lower().replace(" ", "_"),
                                "error_description": "injected fault",
                            },
                            headers,
                        )
                if response is None and not request.path.startswith(UNMETERED_PREFIXES):
                    retry_after = emu.limiter.check()
                    if retry_after is not None:
                        response = json_response(
                            429,
                            {
                                "error": "too_many_requests",
                                "error_description": "application rate limit exceeded",
                            },
                            {"Retry-After": str(retry_after)},
                        )
                if response is None:
                    response = self._run(api_router, request)
            except Exception:
                traceback.print_exc(file=sys.stderr)
                response = json_response(500, {"error": "internal_error"})
            # Log before answering, so a client that saw the answer also sees the log entry.
            emu._record_request(request, None if response.drop else response.status, started, fault_name)
            if response.drop:
                self.close_connection = True
            else:
                self._send(response)

        def _run(self, router: Router, request: Request, control: bool = False) -> Response:
            try:
                return router.dispatch(request)
            except ApiError as exc:
                return _error_response(exc)
            except EmulatorError as exc:
                return json_response(exc.status, {"error": exc.message})
            except (ValueError, TypeError) as exc:
                if not control:
                    raise
                return json_response(400, {"error": str(exc)})
            except Exception:
                traceback.print_exc(file=sys.stderr)
                return json_response(500, {"error": "internal_error"})

        def _send(self, response: Response) -> None:
            try:
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(response.body)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if response.body and self.command != "HEAD":
                    self.wfile.write(response.body)
                self.wfile.flush()
            except OSError:
                self.close_connection = True

    return Handler
