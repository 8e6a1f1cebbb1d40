"""API Gateway (HTTP API, payload format 2.0) stand-in: match the template's routes, check the
session JWT on authorized ones, build the v2 event, call the function, answer with its result.

Beside the API it serves the local web pages (`localdev.webapp`: /app, /docs, /openapi.json). It is
given the function to call (`invoke`) rather than the stack, so it knows nothing above it.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from localdev import jwt, template, webapp
from localdev.provisioning import ACCOUNT_ID

JWT_KEY = b"local-session-jwt-key"
WEB_PREFIXES = ("app", "docs", "openapi.json")
# API Gateway's payload limit for an HTTP API: a larger request never reaches the function (413).
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
# One line per request at INFO (method, path without its query, status, ms, function): `make local`
# shows them; the tests and the demo leave this logger at WARNING.
request_log = logging.getLogger("localdev.router")
# Path parameters that are credentials: logged as their name, never their value.
SECRET_PATH_PARAMETERS = frozenset({"channel_token"})

Invoke = Callable[[str, dict[str, Any]], Any]


def session_token(user_id: str, org_id: str, roles: list[str] | None = None) -> str:
    """A session JWT with the local issuer, standing in for SolarNexus sign-in."""
    return jwt.issue(JWT_KEY, user_id, org_id, roles)


def http_event(method: str, raw_path: str, query: str, headers: dict[str, str], body: bytes,
               route: template.Route, path_params: dict[str, str], claims: dict | None) -> dict[str, Any]:
    """The event API Gateway passes a function for one request (payload format 2.0)."""
    cookies = [c.strip() for c in headers.get("cookie", "").split(";") if c.strip()]
    # API Gateway passes text bodies as they are and anything else base64-encoded.
    try:
        text_body, encoded = (body.decode("utf-8") if body else None), False
    except UnicodeDecodeError:
        text_body, encoded = base64.b64encode(body).decode(), True
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {route.path}",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": {k: v for k, v in headers.items() if k != "cookie"},
        "queryStringParameters": dict(parse_qsl(query)) or None,
        "pathParameters": path_params or None,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": "local",
            "domainName": "127.0.0.1",
            "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": headers.get("user-agent", "")},
            "requestId": str(uuid.uuid4()),
            "routeKey": f"{method} {route.path}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "timeEpoch": int(time.time() * 1000),
        },
        "body": text_body,
        "isBase64Encoded": encoded,
    }
    if cookies:
        event["cookies"] = cookies
    if claims is not None:
        event["requestContext"]["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    return event


class ApiGateway:
    """The router on 127.0.0.1 (a port of its own) in front of the functions."""

    def __init__(self, routes: list[template.Route], invoke: Invoke, port: int = 0) -> None:
        self.routes = routes
        self.invoke = invoke
        self.port = port  # 0: a free port
        self._server: ThreadingHTTPServer | None = None
        self._webhook_failures = 0
        self._webhook_failures_lock = threading.Lock()

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _RouterHandler)
        self._server.daemon_threads = True
        self._server.gateway = self  # type: ignore[attr-defined]
        # polled every 0.1 s, not serve_forever's 0.5 s: stop() (every test's stack) waits for the next poll
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="router",
                         daemon=True).start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail_webhooks(self, count: int) -> None:
        """The next `count` requests to the webhook route are answered 503."""
        with self._webhook_failures_lock:
            self._webhook_failures += count

    def take_webhook_failure(self) -> bool:
        with self._webhook_failures_lock:
            if self._webhook_failures > 0:
                self._webhook_failures -= 1
                return True
            return False

    def match(self, method: str, path: str) -> tuple[template.Route, dict[str, str]] | None:
        for route in self.routes:
            found = route.pattern.match(path)
            if found and route.method == method:
                return route, found.groupdict()
        return None


def _claims(headers: dict[str, str]) -> dict | None:
    """The verified session JWT's claims (None: missing or invalid)."""
    auth = headers.get("authorization", "")
    return jwt.verify(JWT_KEY, auth.removeprefix("Bearer ").strip()) if auth.startswith("Bearer ") else None


class _RouterHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LocalApiGateway/1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: see _logged
        return

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                cookies: list[str] | None = None) -> None:
        self._status = status
        self._log_request()  # before the answer leaves: a caller that has its answer finds its line
        self.send_response(status)
        for key, value in (headers or {}).items():
            if key.lower() != "content-length":
                self.send_header(key, value)
        for cookie in cookies or []:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict) -> None:
        self._answer(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _logged(self) -> None:
        """Handle one request, then log it in one line. The query string is left out (an OAuth
        callback's carries a code and a signed state), and so is a channel token in the path."""
        self._started, self._was_logged = time.perf_counter(), False
        self._status, self._function, self._logged_path = 0, "-", urlsplit(self.path).path
        try:
            self._handle()
        finally:
            self._log_request()  # a request that ended without an answer is logged too (status 0)

    def _log_request(self) -> None:
        if not self._was_logged:
            self._was_logged = True
            request_log.info("%s %s %d %.0f ms %s", self.command, self._logged_path, self._status,
                             (time.perf_counter() - self._started) * 1000, self._function)

    def _handle(self) -> None:
        gateway: ApiGateway = self.server.gateway  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return self._json(400, {"message": "Bad Request"})
        if length > MAX_PAYLOAD_BYTES:
            # As API Gateway: refused before any function runs, with its own body. The body is not
            # read, so this connection cannot carry another request.
            self.close_connection = True
            return self._answer(413, json.dumps({"message": "Request Entity Too Large"}).encode(),
                                {"Content-Type": "application/json", "Connection": "close"})
        body = self.rfile.read(length) if length else b""
        if parts.path.split("/")[1] in WEB_PREFIXES:
            self._function = "webapp"
            return self._web_app(parts.path, parts.query)
        method = self.command.upper()
        matched = gateway.match(method, parts.path)
        if matched is None:
            return self._json(404, {"message": "Not Found"})
        route, path_params = matched
        self._function = route.function
        for name, value in path_params.items():
            if name in SECRET_PATH_PARAMETERS:
                self._logged_path = self._logged_path.replace(value, "{" + name + "}")
        if route.function == "WebhookIntakeFunction" and gateway.take_webhook_failure():
            return self._json(503, {"message": "Service Unavailable"})  # as API Gateway would
        headers = {k.lower(): v for k, v in self.headers.items()}
        claims = _claims(headers) if route.authorized else None
        if route.authorized and claims is None:
            return self._json(401, {"message": "Unauthorized"})
        event = http_event(method, parts.path, parts.query, headers, body, route, path_params, claims)
        try:
            result = gateway.invoke(route.function, event)
        except Exception:  # noqa: BLE001 - API Gateway answers 500 when the function fails
            return self._json(500, {"message": "Internal Server Error"})
        payload = result.get("body") or ""
        raw = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
        self._answer(int(result.get("statusCode", 200)), raw, result.get("headers") or {}, result.get("cookies"))

    def _web_app(self, path: str, query: str) -> None:
        """Local-dev pages beside the API: the web app's profile page (/app, with /app/session minting
        a session JWT), Swagger UI (/docs) and the OpenAPI document (/openapi.json)."""
        status, body, headers = webapp.respond(session_token, self.command.upper(), path, query)
        self._answer(status, body, headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _logged

    def __getattr__(self, name: str):
        # Any other method (HEAD, OPTIONS, QUERY...) reaches the routing too, so an unknown one gets
        # API Gateway's JSON 404 instead of http.server's 501 page.
        if name.startswith("do_"):
            return self._logged
        raise AttributeError(name)
