"""Signed push-notification delivery from a background worker thread."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import queue
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

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


class Notifier:
    """Delivers notifications in order on one daemon thread and keeps a log of every attempt."""

    def __init__(self, client_secret: str, timeout: float = DELIVERY_TIMEOUT_SECONDS) -> None:
        self._secret = client_secret
        self._timeout = timeout
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._pending = 0
        self._cond = threading.Condition()
        self._log: list[dict[str, Any]] = []
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="cronofy-emulator-notify", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=self._timeout + 1)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- producer side ---------------------------------------------------------------------
    def enqueue(self, url: str, body: bytes, meta: dict[str, Any]) -> None:
        with self._cond:
            self._pending += 1
        self._queue.put(_Job(url, body, meta))

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until every queued notification has been attempted. Returns False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    @property
    def log(self) -> list[dict[str, Any]]:
        with self._cond:
            return [dict(entry) for entry in self._log]

    def clear_log(self) -> None:
        with self._cond:
            self._log.clear()

    # -- worker ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            entry = self._deliver(job)
            with self._cond:
                self._log.append(entry)
                self._pending -= 1
                self._cond.notify_all()

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
        signature = sign_body(self._secret, job.body)
        entry: dict[str, Any] = {
            **job.meta,
            "url": job.url,
            "body": job.body.decode("utf-8"),
            "signature": signature,
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
