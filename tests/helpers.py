"""Shared steps for tests that go through the local stack: defined in `localdev.builders` (the
benchmarks use them too), re-exported here for the tests' existing imports; and waiting for a
condition rather than for a time."""

import time
from collections.abc import Callable

from calsync.clock import utcnow
from localdev.builders import cal_id, connect, deleted, in_days, iso, managed_events, milestone, push

__all__ = ["cal_id", "connect", "deleted", "in_days", "iso", "managed_events", "milestone", "next_second", "push",
           "wait_until"]


def wait_until(condition: Callable[[], object], timeout: float = 10.0, every: float = 0.02, what: str = "") -> None:
    """Poll `condition` until it holds; a clear failure after `timeout` seconds (a loaded machine only makes
    the wait longer, never the test wrong)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {what or condition}")
        time.sleep(every)


def next_second() -> None:
    """Times on the wire (and Cronofy's `updated`) have whole seconds: wait until the clock shows a later
    second than now, so what comes next is stamped after what came before."""
    mark = utcnow()
    wait_until(lambda: utcnow() > mark, timeout=5, what="the next whole second")
