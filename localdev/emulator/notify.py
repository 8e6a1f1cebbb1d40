"""Signed push-notification delivery from a background worker thread."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import random
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .realism import Realism

DELIVERY_TIMEOUT_SECONDS = 5.0
SIGNATURE_HEADER = "Cronofy-HMAC-SHA256"


def sign_body(client_secret: str, body: bytes) -> str:
    """Cronofy's push signature: base64(HMAC-SHA256(key=client_secret, msg=raw body bytes))."""
    digest = hmac.new(client_secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def encode_notification(notification: dict[str, Any], channel: dict[str, Any]) -> bytes:
    """Compact JSON body with ``notification`` first, as Cronofy sends it."""
    payload = {"notification": notification, "channel": channel}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass
class _Job:
    url: str
    body: bytes
    meta: dict[str, Any]
    due: datetime
    seq: int
    attempt: int = 0


class Notifier:
    """Delivers notifications on one daemon thread, on the emulator clock, and logs every attempt.

    A job is delivered once the emulator clock reaches its due time. A non-2xx answer or a
    transport failure is retried with exponential backoff (``push_backoff`` x 1, 2, 4, ... seconds of
    the emulator clock) up to ``push_max_attempts``, after which ``on_give_up`` closes the channel.
    Some jobs are delivered twice (``push_duplicate_rate``) and some are held back so that later
    ones overtake them (``push_reorder_rate``); both are seeded. The signature header carries one
    HMAC per active client secret, comma-separated.
    """

    def __init__(
        self,
        client_secret: str | Callable[[], list[str]],
        timeout: float = DELIVERY_TIMEOUT_SECONDS,
        clock: Callable[[], datetime] | None = None,
        realism: Callable[[], Realism] | None = None,
        on_give_up: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._secrets = client_secret if callable(client_secret) else (lambda: [client_secret])
        self._timeout = timeout
        self._clock = clock or (lambda: datetime.now(UTC))
        self._realism = realism or Realism.off
        self._on_give_up = on_give_up
        self._jobs: list[_Job] = []
        self._seq = 0
        self._inflight = 0
        self._hurry = 0
        self._stopping = False
        self._cond = threading.Condition()
        self._log: list[dict[str, Any]] = []
        self._thread: threading.Thread | None = None
        self._rng = random.Random(self._realism().push_seed)
        self.on_tick: Callable[[], None] | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="cronofy-emulator-notify", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
            self._thread.join(timeout=self._timeout + 1)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def reseed(self, seed: int) -> None:
        with self._cond:
            self._rng = random.Random(seed)

    # -- producer side ---------------------------------------------------------------------
    def enqueue(self, url: str, body: bytes, meta: dict[str, Any]) -> None:
        realism = self._realism()
        with self._cond:
            now = self._clock()
            due = now
            if realism.push_reorder_rate and self._rng.random() < realism.push_reorder_rate:
                due = now + timedelta(seconds=realism.push_reorder_delay)
                meta = {**meta, "held_back": True}
            self._add(url, body, meta, due)
            if realism.push_duplicate_rate and self._rng.random() < realism.push_duplicate_rate:
                later = due + timedelta(seconds=self._rng.uniform(0, realism.push_reorder_delay))
                self._add(url, body, {**meta, "duplicate": True}, later)
            self._cond.notify_all()

    def _add(self, url: str, body: bytes, meta: dict[str, Any], due: datetime) -> None:
        self._seq += 1
        self._jobs.append(_Job(url, body, dict(meta), due, self._seq))

    def flush(self, timeout: float = 5.0) -> bool:
        """Deliver everything queued now, retries included (backoff skipped), until nothing is left.
        False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._hurry += 1
            self._cond.notify_all()
            try:
                while self._jobs or self._inflight:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(min(remaining, 0.05))
                return True
            finally:
                self._hurry -= 1

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until every queued notification has been attempted until delivered or given up."""
        return self.flush(timeout)

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._jobs) + self._inflight

    @property
    def log(self) -> list[dict[str, Any]]:
        with self._cond:
            return [dict(entry) for entry in self._log]

    def clear_log(self) -> None:
        with self._cond:
            self._log.clear()

    def clear_queue(self) -> None:
        with self._cond:
            self._jobs.clear()
            self._cond.notify_all()

    # -- worker ----------------------------------------------------------------------------
    def _next_due(self) -> _Job | None:
        if not self._jobs:
            return None
        job = min(self._jobs, key=lambda j: (j.due, j.seq))
        if self._hurry or job.due <= self._clock():
            self._jobs.remove(job)
            return job
        return None

    def _run(self) -> None:
        while True:
            if self.on_tick is not None:
                try:
                    self.on_tick()  # outside our lock: the state's lock is taken before ours
                except Exception:  # the worker must survive anything; say what happened
                    traceback.print_exc(file=sys.stderr)
            with self._cond:
                if self._stopping:
                    return
                job = self._next_due()
                if job is None:
                    # the emulator clock can jump (advance_clock, time-machine): poll it
                    self._cond.wait(0.02)
                    continue
                self._inflight += 1
            entry = self._deliver(job)
            give_up = None
            with self._cond:
                self._inflight -= 1
                self._log.append(entry)
                if entry["error"] is not None:
                    realism = self._realism()
                    job.attempt += 1
                    if realism.push_retries and job.attempt < realism.push_max_attempts:
                        backoff = realism.push_backoff * (2 ** (job.attempt - 1))
                        job.due = self._clock() + timedelta(seconds=backoff)
                        self._jobs.append(job)
                    elif realism.push_retries:
                        give_up = dict(job.meta)
                self._cond.notify_all()
            if give_up is not None and self._on_give_up is not None:
                self._on_give_up(give_up)

    def _post(self, url: str, body: bytes, signature: str) -> int:
        # http.client keeps the header's exact spelling (urllib would send "Cronofy-hmac-sha256").
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"unsupported callback URL {url!r}")
        conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(parts.hostname, parts.port, timeout=self._timeout)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            conn.request(
                "POST",
                path,
                body=body,
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    SIGNATURE_HEADER: signature,
                    "User-Agent": "Cronofy-Emulator/1.0",
                },
            )
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def _deliver(self, job: _Job) -> dict[str, Any]:
        signature = ",".join(sign_body(secret, job.body) for secret in self._secrets())
        entry: dict[str, Any] = {
            **job.meta,
            "url": job.url,
            "body": job.body.decode("utf-8"),
            "signature": signature,
            "attempt": job.attempt + 1,
            "at": time.time(),
            "status": None,
            "error": None,
        }
        try:
            entry["status"] = self._post(job.url, job.body, signature)
            if not 200 <= entry["status"] < 300:
                entry["error"] = f"HTTP {entry['status']}"
        except Exception as exc:  # any transport problem is recorded, never raised
            entry["error"] = f"{type(exc).__name__}: {exc}"
        return entry
