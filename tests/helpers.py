"""Shared steps for tests that go through the local stack: defined in `localdev.builders` (the
benchmarks use them too), re-exported here for the tests' existing imports."""

from localdev.builders import cal_id, connect, deleted, in_days, iso, managed_events, milestone, push

__all__ = ["cal_id", "connect", "deleted", "in_days", "iso", "managed_events", "milestone", "push"]
