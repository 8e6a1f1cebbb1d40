"""Busy periods (calsync.busy) merged and kept from Read Events, and the backfill's planning and
finishing (calsync.backfill), on the in-memory store and the fake Cronofy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calsync.backfill import CHUNK_SIZE, BackfillChunkFailed
from calsync.busy import covered_until, merge
from calsync.cronofy import CronofyUnavailable
from calsync.models import BackfillProgress, ConnectionState, utcnow
from tests.fakes.world import World, milestone

T0 = datetime(2026, 12, 1, tzinfo=UTC)
spans = st.lists(st.tuples(st.integers(0, 500), st.integers(-10, 120)), max_size=30).map(
    lambda xs: [(T0 + timedelta(minutes=s), T0 + timedelta(minutes=s + d)) for s, d in xs])


@given(spans)
def test_merged_busy_time_is_sorted_disjoint_and_covers_exactly_the_same_minutes(intervals):
    merged = merge(intervals)
    assert all(a[1] < b[0] for a, b in zip(merged, merged[1:], strict=False))
    assert all(s < e for s, e in merged)

    def minutes(ivs):
        return {s + timedelta(minutes=i) for s, e in ivs if e > s for i in range(int((e - s).total_seconds() // 60))}

    assert minutes(merged) == minutes(intervals)


def test_a_rebuild_keeps_the_users_own_busy_events_only():
    world = World()
    world.connect("u_1")
    world.publish(milestone())  # ours: never a busy block here
    start = (utcnow() + timedelta(days=2)).replace(minute=0, second=0)
    at = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    until = (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    world.cronofy.user_adds("u_1", "cal_1", at, until)
    world.cronofy.user_adds("u_1", "cal_1", at, until, transparency="transparent")  # "Show as Free"
    conn = world.store.get_connection("u_1")
    assert world.busy.rebuild(conn, world.cronofy.client("u_1")) == 1
    stored = world.busy.periods(["u_1"], start - timedelta(days=1), start + timedelta(days=1))["u_1"]
    assert stored.blocks == [(start, start + timedelta(hours=1))]


# ---- backfill --------------------------------------------------------------------------------------


def started(world: World, user_id: str = "u_1", previous: str | None = None) -> dict:
    world.store.put_backfill(user_id, "run_1", BackfillProgress(status="pending"))
    event = {"user_id": user_id, "run_id": "run_1"}
    if previous:
        event["previous_calendar_id"] = previous
    return event


def test_the_plan_chunks_the_users_milestones_and_a_stale_run_does_nothing():
    world = World()
    world.connect("u_1", state=ConnectionState.SYNCING)
    for i in range(CHUNK_SIZE + 5):
        m = milestone(f"m_{i}")
        world.store.put_mirror_if_newer("org_1", m.milestone_id, 1, m.model_dump_json())
        world.engine.sync([m.milestone_id])  # indexes it (and writes it: the calendar is syncing)
    event = started(world)
    planned = world.backfill.plan(event)
    assert planned == {"chunks": [0, 1], "total": CHUNK_SIZE + 5, "stale": False}
    assert len(world.store.get_chunk("run_1", 0)) == CHUNK_SIZE
    assert world.backfill.plan({"user_id": "u_1", "run_id": "run_old"})["stale"]
    assert world.backfill.chunk(event | {"chunk": 1})["chunk"] == 1
    assert int(world.store.get_backfill("u_1")["done"]) == 5


def test_a_switch_moves_every_event_and_finishing_connects_the_user():
    world = World()
    world.connect("u_1", "cal_old")
    world.publish(milestone("m_1"))
    world.cronofy.account("u_1", "cal_new")
    world.store.update_connection("u_1", lambda c: c.model_copy(update={
        "calendar_id": "cal_new", "state": ConnectionState.SYNCING}))
    event = started(world, previous="cal_old")
    planned = world.backfill.plan(event)
    for n in planned["chunks"]:
        world.backfill.chunk(event | {"chunk": n})
    assert world.backfill.finalize(event) == {"stale": False, "total": 1}
    assert set(world.cronofy.managed("u_1")) == {("cal_new", "sn-m_1")}
    conn = world.store.get_connection("u_1")
    assert conn.state == ConnectionState.CONNECTED and conn.busy_rebuilt_at is not None
    assert world.publisher.sent[-1][:4] == ("connection_changed", "org_1", "u_1", ConnectionState.CONNECTED)


def test_a_chunk_that_cannot_be_written_fails_for_the_state_machine():
    world = World()
    world.connect("u_1", state=ConnectionState.SYNCING)
    m = milestone()
    world.store.put_mirror_if_newer("org_1", "m_1", 1, m.model_dump_json())
    world.store.set_schedule_index("m_1", {"u_1": f"{m.start}#m_1"}, [])
    event = started(world)
    world.backfill.plan(event)
    world.cronofy.outage = 503
    with pytest.raises(CronofyUnavailable):  # retried by the state machine
        world.backfill.chunk(event | {"chunk": 0})
    world.cronofy.outage = 422
    with pytest.raises(BackfillChunkFailed):
        world.backfill.chunk(event | {"chunk": 0})
    assert world.backfill.fail(event | {"error": {"Error": "BackfillChunkFailed"}}) == {"stale": False}
    conn = world.store.get_connection("u_1")
    assert conn.state == ConnectionState.CONNECTED and "backfill failed" in conn.last_error


def test_stored_busy_periods_cover_days_ahead_of_the_last_rebuild():
    from calsync.models import Connection

    now = datetime(2026, 12, 2, 15, 30, tzinfo=UTC)
    conn = Connection.model_construct(busy_rebuilt_at=datetime(2026, 11, 25, 23, 0, tzinfo=UTC))
    # the rebuild's window ends at 00:00 UTC on the 60th day after it (as Read Events' `to`)
    assert covered_until(conn, now) == datetime(2027, 1, 24, tzinfo=UTC)
    assert covered_until(None, now) == datetime(2027, 1, 31, tzinfo=UTC)  # none recorded: one made now
