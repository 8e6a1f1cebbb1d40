"""HTTP front end: the threaded server, and the request handler that reads a request, applies
injected faults and the application rate limit, dispatches to the control or the API router and
logs the request. The routes themselves are in ``routes.py`` (``/oauth``, ``/v1``) and
``control.py`` (``/_emulator``)."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import traceback
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .core import Emulator
from .errors import ApiError, EmulatorError
from .traffic import Fault
from .web import Request, Response, Router, json_response

MAX_BODY = 5 * 1024 * 1024
# Paths the application rate limit does not count (browser pages, not API calls).
UNMETERED_PREFIXES = ("/oauth/authorize", "/relink/", "/_emulator", "/enterprise_connect/oauth/authorize")


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 256  # the default of 5 drops SYNs under concurrent clients (1 s stalls)

    def __init__(
        self, address: tuple[str, int], emu: Emulator, api_router: Router, control_router: Router
    ) -> None:
        self.emu = emu
        self.api_router = api_router
        self.control_router = control_router
        super().__init__(address, _Handler)
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


def _fault_response(fault: Fault) -> Response | None:
    """What an injected fault answers (after its latency); None: the request is handled normally."""
    if fault.latency_ms:
        time.sleep(fault.latency_ms / 1000.0)
    if fault.mode == "drop":
        return Response(0, drop=True)
    if fault.mode != "status" or fault.status is None:
        return None
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    phrase = HTTPStatus(fault.status).phrase if fault.status in HTTPStatus._value2member_map_ else "Error"
    return json_response(
        fault.status,
        {"error": phrase.lower().replace(" ", "_"), "error_description": "injected fault"},
        headers,
    )


def _malformed(response: Response) -> Response:
    """The `malformed` fault: the request was applied, and its successful JSON answer loses every
    top-level number (e.g. a token answer without `expires_in`), a body the client cannot use."""
    if not 200 <= response.status < 300 or not response.body:
        return response
    data = json.loads(response.body)
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if isinstance(v, bool) or not isinstance(v, int | float)}
    return json_response(response.status, data, response.headers)


def _dispatch(router: Router, request: Request, control: bool = False) -> Response:
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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "CronofyEmulator/1.0"
    sys_version = ""
    timeout = 60  # idle keep-alive connections are closed after this
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024  # headers and body leave in one write (no Nagle/delayed-ACK stall)
    server: EmulatorHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.emu.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        n = int(length)
        if n > MAX_BODY:
            raise ValueError("request body too large")
        return self.rfile.read(n)

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size = int(self.rfile.readline().strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

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
                self._send(_dispatch(self.server.control_router, request, control=True))
                return
            fault = self.server.emu.faults.take(request.method, request.path)
            fault_name = fault.mode if fault is not None else None
            response = self._answer(request, fault)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            response = json_response(500, {"error": "internal_error"})
        # Log before answering, so a client that saw the answer also sees the log entry.
        self.server.emu.record_request(request, None if response.drop else response.status, started, fault_name)
        if response.drop:
            self.close_connection = True
        else:
            self._send(response)

    def _answer(self, request: Request, fault: Fault | None) -> Response:
        """The injected fault's answer, else the rate limit's, else the API's."""
        emu = self.server.emu
        response = _fault_response(fault) if fault is not None else None
        if response is None and not request.path.startswith(UNMETERED_PREFIXES):
            retry_after = emu.limiter.check()
            if retry_after is not None:
                response = json_response(
                    429,
                    {"error": "too_many_requests", "error_description": "application rate limit exceeded"},
                    {"Retry-After": str(retry_after)},
                )
        if response is None:
            response = _dispatch(self.server.api_router, request)
            if fault is not None and fault.mode == "malformed":
                response = _malformed(response)
        return response

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
