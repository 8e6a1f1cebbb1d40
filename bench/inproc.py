"""In-process transport for the capacity benchmark: the same requests, no sockets and no server threads.

`requests` sessions (the service's Cronofy client, the users' browsers) reach the Cronofy emulator and
the local API Gateway through a transport adapter that calls what their HTTP servers would call, in the
calling thread: for the emulator, the fault injector, the application rate limit, the API or control
router and the request log exactly as `localdev/emulator/server.py` does; for the gateway, the route
match, the session JWT check and the function invocation exactly as `localdev/api_gateway.py` does.
The emulator's push notifications are delivered to the webhook route the same way, by the caller of
`deliver_pushes` (the benchmark's settle), not by the notifier's thread.

Why: at 200 users, a third of the benchmark's wall time was spent handing requests between threads
over loopback sockets (cProfile: lock waits, socket close and recv). What the handlers, the client and
the emulator do is unchanged; only the bytes no longer cross a socket.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import random
import time
import urllib.parse
from collections import Counter
from typing import Any

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from localdev import webapp
from localdev.api_gateway import WEB_PREFIXES, _claims, http_event, session_token
from localdev.emulator.server import UNMETERED_PREFIXES, _dispatch, _fault_response
from localdev.emulator.web import Request, Response, json_response


class _Raw:
    """Just enough of urllib3's response for requests: redirects read and release it, cookies are
    extracted from `_original_response.msg`."""

    def __init__(self, headers: list[tuple[str, str]]):
        msg = http.client.HTTPMessage()
        for name, value in headers:
            msg[name] = value
        self._original_response = self
        self.msg = msg

    def read(self, *args: Any, **kwargs: Any) -> bytes:
        return b""

    def close(self) -> None:
        return None

    def release_conn(self) -> None:
        return None


def _response(req: requests.PreparedRequest, status: int, body: bytes,
              headers: list[tuple[str, str]]) -> requests.Response:
    from requests.cookies import extract_cookies_to_jar

    resp = requests.Response()
    resp.status_code = status
    resp._content = body
    resp._content_consumed = True
    resp.headers = CaseInsensitiveDict(headers)
    resp.url = req.url or ""
    resp.request = req
    resp.encoding = "utf-8"
    resp.reason = http.client.responses.get(status, "")
    resp.raw = _Raw(headers)
    extract_cookies_to_jar(resp.cookies, req, resp.raw)
    return resp


def _body(req: requests.PreparedRequest) -> bytes:
    body = req.body
    if body is None:
        return b""
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


FAULTS: Counter = Counter()  # random faults answered, by kind
FAULTS_ON = [True]  # switched off while the benchmark seeds its starting state (not a measured period)
LATENCY_ON = [True]  # likewise


class EmulatorAdapter(BaseAdapter):
    """The Cronofy emulator's HTTP front end (server.py `_Handler._handle`), called in this thread.

    `faults` (the rough world): each API request, at these rates (seeded), is answered 503 ("5xx"), 429 with
    Retry-After 2 from Cronofy's side ("429"), or handled and then never answered ("timeout": the client
    gives up after its timeout, which costs that much virtual time; the write may have happened).

    `latency` ({"median_s", "p99_s"}: log-normal): each API request is handled when it arrives (the
    emulator's rate limit counts it then) and its answer comes back after a latency drawn from that
    distribution (seeded), spent in time.sleep (virtual in the benchmark: only the calling invocation waits).
    An answer later than the client's read timeout is a timeout (the request was handled)."""

    def __init__(self, emu: Any, api_router: Any, control_router: Any, faults: dict[str, float] | None = None,
                 seed: int = 0, latency: dict[str, Any] | None = None):
        super().__init__()
        self.emu, self.api_router, self.control_router = emu, api_router, control_router
        self.faults = faults or {}
        self.rng = random.Random(seed + 21)
        self.latency_rng = random.Random(seed + 22)
        self.latency = None
        if latency:
            mu = math.log(latency["median_s"])
            sigma = math.log(latency["p99_s"] / latency["median_s"]) / 2.3263478740408408  # z of the 99th
            self.latency = (mu, sigma)

    def _answer(self, request: requests.PreparedRequest, out: Response, timeout: Any) -> requests.Response:
        """The answer, after its latency (or the client's timeout, if that comes first)."""
        if self.latency is not None and LATENCY_ON[0]:
            took = self.latency_rng.lognormvariate(*self.latency)
            limit = timeout[1] if isinstance(timeout, tuple) else timeout
            if limit is not None and took > float(limit):
                time.sleep(float(limit))
                FAULTS["answer slower than the client's timeout"] += 1
                raise requests.ReadTimeout("the answer took longer than the client's timeout")
            time.sleep(took)
        return self._to_requests(request, out)

    def _random_fault(self, req: Request) -> str | None:
        if not self.faults or not FAULTS_ON[0] or req.path.startswith(UNMETERED_PREFIXES):
            return None
        x = self.rng.random()
        for kind in ("5xx", "429", "timeout"):
            x -= self.faults.get(kind, 0.0)
            if x < 0:
                return kind
        return None

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None, verify: Any = True,
             cert: Any = None, proxies: Any = None) -> requests.Response:
        started = time.time()
        split = urllib.parse.urlsplit(request.url or "")
        req = Request(method=(request.method or "GET").upper(), path=split.path,
                      query=urllib.parse.parse_qs(split.query, keep_blank_values=True),
                      headers=CaseInsensitiveDict(request.headers), body=_body(request))
        if req.path == "/_emulator" or req.path.startswith("/_emulator/"):
            out = _dispatch(self.control_router, req, control=True)
            return self._to_requests(request, out)
        chaos = self._random_fault(req)
        if chaos is not None:
            FAULTS[chaos] += 1
        if chaos == "5xx":
            out = json_response(503, {"error": "service_unavailable", "error_description": "random fault"})
            self.emu.record_request(req, 503, started, "random_5xx")
            return self._answer(request, out, timeout)
        if chaos == "429":
            out = json_response(429, {"error": "too_many_requests", "error_description": "random fault"},
                                {"Retry-After": "2"})
            self.emu.record_request(req, 429, started, "random_429")
            return self._answer(request, out, timeout)
        fault = self.emu.faults.take(req.method, req.path)
        response: Response | None = _fault_response(fault) if fault is not None else None
        if response is None and not req.path.startswith(UNMETERED_PREFIXES):
            retry_after = self.emu.limiter.check()
            if retry_after is not None:
                response = json_response(429, {"error": "too_many_requests",
                                               "error_description": "application rate limit exceeded"},
                                         {"Retry-After": str(retry_after)})
        if response is None:
            response = _dispatch(self.api_router, req)
        self.emu.record_request(req, None if response.drop else response.status, started,
                                fault.mode if fault is not None else None)
        if response.drop:
            raise requests.ConnectionError("connection closed without an answer (injected drop)")
        if chaos == "timeout":
            wait = timeout[0] if isinstance(timeout, tuple) else timeout
            time.sleep(float(wait or 8.0))  # the client's timeout passes (virtual in the benchmark)
            raise requests.ReadTimeout("random fault: no answer before the client's timeout")
        return self._answer(request, response, timeout)

    @staticmethod
    def _to_requests(request: requests.PreparedRequest, out: Response) -> requests.Response:
        headers = [("Content-Type", out.content_type), ("Content-Length", str(len(out.body)))]
        headers += list(out.headers.items())
        return _response(request, out.status, out.body, headers)

    def close(self) -> None:
        return None


class GatewayAdapter(BaseAdapter):
    """The local API Gateway (api_gateway.py `_RouterHandler._handle`), called in this thread."""

    def __init__(self, gateway: Any):
        super().__init__()
        self.gateway = gateway

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None, verify: Any = True,
             cert: Any = None, proxies: Any = None) -> requests.Response:
        status, body, headers = handle_gateway(self.gateway, (request.method or "GET").upper(), request.url or "",
                                               dict(request.headers), _body(request))
        return _response(request, status, body, headers)

    def close(self) -> None:
        return None


def handle_gateway(gateway: Any, method: str, url: str, raw_headers: dict[str, str],
                   body: bytes) -> tuple[int, bytes, list[tuple[str, str]]]:
    parts = urllib.parse.urlsplit(url)

    def answer(status: int, payload: dict) -> tuple[int, bytes, list[tuple[str, str]]]:
        return status, json.dumps(payload).encode(), [("Content-Type", "application/json")]

    if parts.path.split("/")[1] in WEB_PREFIXES:  # the local web app's pages (where a connect ends)
        status, page, page_headers = webapp.respond(session_token, method, parts.path, parts.query)
        return status, page, list(page_headers.items())
    matched = gateway.match(method, parts.path)
    if matched is None:
        return answer(404, {"message": "Not Found"})
    route, path_params = matched
    if route.function == "WebhookIntakeFunction" and gateway.take_webhook_failure():
        return answer(503, {"message": "Service Unavailable"})
    headers = {k.lower(): v for k, v in raw_headers.items()}
    headers.setdefault("content-length", str(len(body)))
    claims = _claims(headers) if route.authorized else None
    if route.authorized and claims is None:
        return answer(401, {"message": "Unauthorized"})
    event = http_event(method, parts.path, parts.query, headers, body, route, path_params, claims)
    try:
        result = gateway.invoke(route.function, event)
    except Exception:  # noqa: BLE001 - API Gateway answers 500 when the function fails
        return answer(500, {"message": "Internal Server Error"})
    payload = result.get("body") or ""
    raw = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
    out = [(k, v) for k, v in (result.get("headers") or {}).items() if k.lower() != "content-length"]
    out += [("Set-Cookie", c) for c in result.get("cookies") or []]
    out.append(("Content-Length", str(len(raw))))
    return int(result.get("statusCode", 200)), raw, out


def install(stack: Any, faults: dict[str, float] | None = None, seed: int = 0,
            latency: dict[str, Any] | None = None) -> None:
    """Every requests session in the process reaches the emulator and the gateway in process; the
    emulator's notifier thread is stopped (pushes go out from `deliver_pushes`)."""
    from localdev.emulator.control import build_control_router
    from localdev.emulator.routes import build_api_router

    emu = stack.emulator
    emulator = EmulatorAdapter(emu, build_api_router(emu), build_control_router(emu), faults, seed, latency)
    gateway = GatewayAdapter(stack.gateway)
    bases = ((emu.base_url, emulator), (stack.base_url, gateway))
    original = requests.Session.get_adapter

    def get_adapter(session: requests.Session, url: str) -> BaseAdapter:
        for base, adapter in bases:
            if url.startswith(base):
                return adapter
        return original(session, url)

    requests.Session.get_adapter = get_adapter  # type: ignore[method-assign]
    emu.notifier.stop()

    def post(url: str, body: bytes, signature: str) -> int:
        from localdev.emulator.notify import SIGNATURE_HEADER

        status, _, _ = handle_gateway(stack.gateway, "POST", url, {
            "Content-Type": "application/json; charset=utf-8", SIGNATURE_HEADER: signature,
            "User-Agent": "Cronofy-Emulator/1.0"}, body)
        return status

    emu.notifier._post = post


def deliver_pushes(emu: Any) -> int:
    """What the notifier's thread does (notify.py `Notifier._run`), in this thread, for every push due
    now or queued for later (as `settle` does: retries without their backoff). Returns pushes tried."""
    notifier = emu.notifier
    emu.state.tick(flush=True)
    tried = 0
    while True:
        with notifier._cond:
            if not notifier._jobs:
                return tried
            job = min(notifier._jobs, key=lambda j: (j.due, j.seq))
            notifier._jobs.remove(job)
        entry = notifier._deliver(job)
        tried += 1
        give_up = None
        with notifier._cond:  # (the delivery log is not kept: 20,000 users' pushes would fill memory)
            if entry["error"] is not None:
                realism = notifier._realism()
                job.attempt += 1
                if realism.push_retries and job.attempt < realism.push_max_attempts:
                    notifier._jobs.append(job)
                elif realism.push_retries:
                    give_up = dict(job.meta)
        if give_up is not None and notifier._on_give_up is not None:
            notifier._on_give_up(give_up)
        emu.state.tick(flush=True)
