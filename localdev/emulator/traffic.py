"""Fault injection, the application rate limit and traffic statistics."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from .errors import EmulatorError

FAULT_MODES = ("status", "timeout", "drop", "malformed")


@dataclass
class Fault:
    path_prefix: str = "/v1/"
    method: str | None = None
    status: int | None = 429
    retry_after: int | None = None
    count: int | None = 1  # None = until cleared
    latency_ms: int = 0
    mode: str = "status"

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return path.startswith(self.path_prefix)


class FaultInjector:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, **kwargs: Any) -> dict[str, Any]:
        fault = Fault(**kwargs)
        if fault.mode not in FAULT_MODES:
            raise EmulatorError(f"mode must be one of {', '.join(FAULT_MODES)}")
        if fault.path_prefix.startswith("/_emulator"):
            raise EmulatorError("faults cannot target /_emulator paths")
        if fault.mode == "status" and fault.status is not None and not 100 <= fault.status <= 599:
            raise EmulatorError("status must be an HTTP status code")
        if fault.count is not None and fault.count < 1:
            raise EmulatorError("count must be at least 1 (or None for unlimited)")
        if fault.latency_ms < 0:
            raise EmulatorError("latency_ms must not be negative")
        if fault.mode == "timeout" and fault.latency_ms <= 0:
            raise EmulatorError("timeout faults need latency_ms > 0 (how long to hang)")
        with self._lock:
            self._faults.append(fault)
        return asdict(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]

    def take(self, method: str, path: str) -> Fault | None:
        """Consume one use of the first fault matching the request, if any."""
        if path.startswith("/_emulator"):
            return None
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.count is not None:
                        fault.count -= 1
                        if fault.count <= 0:
                            self._faults.remove(fault)
                    return Fault(**asdict(fault))
        return None


class RateLimiter:
    """Sliding one-second and one-minute windows over the application's API requests.

    Also records the highest number of requests seen in any 1 s / 60 s window, limit or not.
    """

    def __init__(self, limits: tuple[int, int] | None = None) -> None:
        self._lock = threading.Lock()
        self._accepted: deque[float] = deque()
        self._seen: deque[float] = deque()
        self._seen_second: deque[float] = deque()
        self.limits = None
        self.set_limits(limits)
        self.reset_stats()

    def set_limits(self, limits: tuple[int, int] | list[int] | None) -> None:
        if limits is not None:
            per_second, per_minute = (int(v) for v in limits)
            if per_second < 1 or per_minute < 1:
                raise EmulatorError("rate limits must be positive")
            limits = (per_second, per_minute)
        with self._lock:
            self.limits = limits
            self._accepted.clear()

    def reset_stats(self) -> None:
        with self._lock:
            self._seen.clear()
            self._seen_second.clear()
            self._stats = {"requests": 0, "rate_limited": 0, "max_per_second": 0, "max_per_minute": 0}

    @property
    def stats(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = dict(self._stats)
            out["rate_limit"] = list(self.limits) if self.limits else None
            return out

    def check(self, now: float | None = None) -> int | None:
        """Count one request. Returns None if allowed, else the Retry-After in whole seconds."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._stats["requests"] += 1
            for window, span in ((self._seen_second, 1.0), (self._seen, 60.0)):
                window.append(now)
                while window and window[0] <= now - span:
                    window.popleft()
            self._stats["max_per_second"] = max(self._stats["max_per_second"], len(self._seen_second))
            self._stats["max_per_minute"] = max(self._stats["max_per_minute"], len(self._seen))
            if self.limits is None:
                return None
            per_second, per_minute = self.limits
            while self._accepted and self._accepted[0] <= now - 60.0:
                self._accepted.popleft()
            in_second = [t for t in self._accepted if t > now - 1.0]
            retry: float | None = None
            if len(in_second) >= per_second:
                retry = in_second[-per_second] + 1.0 - now
            if len(self._accepted) >= per_minute:
                wait = self._accepted[-per_minute] + 60.0 - now
                retry = wait if retry is None else max(retry, wait)
            if retry is not None:
                self._stats["rate_limited"] += 1
                return max(1, math.ceil(retry))
            self._accepted.append(now)
            return None
