"""The sync rules (calsync.sync): what a milestone's mirror asks of each user's calendar. The planning
is pure (`plan_milestone`); the engine runs on the in-memory store and the fake Cronofy."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from calsync.milestones import calendar_event, content_hash
from calsync.models import Connection, ConnectionState, EventRef, utcnow
from calsync.sync import BACKFILL_DAYS, Plan, plan_milestone, pushed_times
from tests.fakes.world import World, milestone

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def connection(user_id: str = "u_1", calendar_id: str | None = "cal_1", org_id: str = "org_1", **fields) -> Connection:
    return Connection(**({"user_id": user_id, "org_id": org_id, "state": ConnectionState.CONNECTED,
                          "provider": "google", "cronofy_sub": f"acc_{user_id}", "calendar_id": calendar_id,
                          "connected_at": NOW, "updated_at": NOW} | fields))


def mirror_of(m, org_id: str = "org_1") -> dict:
    return {"version": m.version, "org_id": org_id, "deleted": False, "body": m.model_dump_json()}


def pushed_ref(m, user_id: str = "u_1", calendar_id: str = "cal_1", **fields) -> EventRef:
    body = calendar_event(m)
    start, end = pushed_times(body)
    return EventRef(**({"milestone_id": m.milestone_id, "user_id": user_id, "calendar_id": calendar_id,
                        "event_id": body["event_id"], "version": m.version, "content_hash": content_hash(body),
                        "start": start, "end": end, "all_day": m.all_day, "timezone": m.timezone,
                        "summary": body["summary"], "updated_at": NOW} | fields))


def plan(m, refs=None, connections=None, scheduled=None, mirror=None, **kwargs) -> Plan:
    p = Plan()
    plan_milestone(p, m.milestone_id if m else "m_1", mirror if mirror is not None else mirror_of(m),
                   scheduled or {}, refs or {}, connections if connections is not None else {"u_1": connection()},
                   NOW, **kwargs)
    return p


def test_a_new_milestone_is_written_to_its_assignees_calendar_and_indexed():
    m = milestone(start=NOW + timedelta(days=2))
    p = plan(m)
    assert [(w.kind, w.user_id, w.calendar_id, w.event_id) for w in p.writes] == [("upsert", "u_1", "cal_1", "sn-m_1")]
    assert p.writes[0].entry() == {"method": "POST", "relative_url": "/v1/calendars/cal_1/events",
                                   "data": calendar_event(m)}
    assert set(p.index_add["m_1"]) == {"u_1"}


def test_nothing_is_written_where_the_calendar_already_shows_the_version():
    m = milestone(start=NOW + timedelta(days=2))
    assert plan(m, refs={"u_1": pushed_ref(m)}).writes == []
    bumped = m.model_copy(update={"version": 2})  # a new version, same event: only the ref follows
    p = plan(bumped, refs={"u_1": pushed_ref(m)})
    assert p.writes == [] and [r.version for r in p.ref_updates] == [2]
    assert [w.kind for w in plan(m, refs={"u_1": pushed_ref(m)}, force=True).writes] == ["upsert"]


def test_no_write_without_a_writable_calendar_of_the_milestones_org():
    m = milestone(start=NOW + timedelta(days=2))
    assert plan(m, connections={}).writes == []  # not connected: still indexed for the backfill
    assert set(plan(m, connections={}).index_add["m_1"]) == {"u_1"}
    assert plan(m, connections={"u_1": connection(state=ConnectionState.NEEDS_REAUTH)}).writes == []
    assert plan(m, connections={"u_1": connection(calendar_id=None)}).writes == []
    assert plan(m, connections={"u_1": connection(org_id="org_2")}).writes == []


def test_old_milestones_are_not_created_but_existing_events_follow():
    old = milestone(start=NOW - timedelta(days=BACKFILL_DAYS + 1))
    assert plan(old).writes == []
    moved = old.model_copy(update={"version": 2, "name": "Renamed"})
    assert [w.kind for w in plan(moved, refs={"u_1": pushed_ref(old)}).writes] == ["upsert"]


def test_an_event_the_user_deleted_comes_back_only_with_a_newer_version():
    m = milestone(start=NOW + timedelta(days=2))
    removed = pushed_ref(m, removed_by_user_version=1)
    assert plan(m, refs={"u_1": removed}).writes == []
    assert [w.kind for w in plan(m.model_copy(update={"version": 2}), refs={"u_1": removed}).writes] == ["upsert"]


def test_a_switched_calendar_gets_the_event_and_the_old_one_loses_it():
    m = milestone(start=NOW + timedelta(days=2))
    p = plan(m, refs={"u_1": pushed_ref(m, calendar_id="cal_old")},
             connections={"u_1": connection(calendar_id="cal_new")})
    assert [(w.kind, w.calendar_id, w.forget_ref) for w in p.writes] == [
        ("upsert", "cal_new", True), ("delete", "cal_old", False)]
    assert p.writes[1].entry() == {"method": "DELETE", "relative_url": "/v1/calendars/cal_old/events",
                                   "data": {"event_id": "sn-m_1"}}


def test_an_unassigned_unscheduled_or_deleted_milestone_leaves_the_calendar():
    m = milestone(start=NOW + timedelta(days=2))
    ref = {"u_1": pushed_ref(m)}
    for gone in (m.model_copy(update={"version": 2, "assignee_user_ids": ["u_2"]}),
                 m.model_copy(update={"version": 2, "status": "unscheduled"})):
        p = plan(gone, refs=ref, connections={"u_1": connection(), "u_2": connection("u_2")})
        assert ("delete", "u_1") in [(w.kind, w.user_id) for w in p.writes]
    deleted = {"version": 3, "org_id": "org_1", "deleted": True, "body": None}
    p = plan(m, refs=ref, mirror=deleted, scheduled={"u_1": "x"})
    assert [(w.kind, w.version) for w in p.writes] == [("delete", 3)] and p.index_remove == {"m_1": ["u_1"]}
    # already deleted by the user: only the ref goes
    p = plan(m, refs={"u_1": pushed_ref(m, removed_by_user_version=1)}, mirror=deleted)
    assert p.writes == [] and p.ref_deletes == [("m_1", "u_1", 3)]


def test_only_user_limits_the_plan_to_one_calendar():
    m = milestone(assignees=("u_1", "u_2"), start=NOW + timedelta(days=2))
    p = plan(m, connections={"u_1": connection(), "u_2": connection("u_2")}, only_user="u_2")
    assert [w.user_id for w in p.writes] == ["u_2"]


# ---- the engine on the fakes -----------------------------------------------------------------------


def test_the_engine_writes_records_refs_and_follows_reassignments():
    world = World()
    world.connect("u_1")
    world.connect("u_2", "cal_2")
    m = milestone(assignees=("u_1",))
    world.publish(m)
    assert set(world.cronofy.managed("u_1")) == {("cal_1", "sn-m_1")}
    assert world.store.get_ref("m_1", "u_1").version == 1
    world.publish(m.model_copy(update={"version": 2, "assignee_user_ids": ["u_2"]}))
    assert world.cronofy.managed("u_1") == {} and set(world.cronofy.managed("u_2")) == {("cal_2", "sn-m_1")}
    assert world.store.get_ref("m_1", "u_1") is None
    world.delete("m_1", 3)
    assert world.cronofy.managed("u_2") == {} and world.store.refs_of_user("u_2") == []


def test_a_revoked_grant_marks_the_connection_and_a_refused_write_fails_its_milestone():
    world = World()
    world.connect("u_1")
    world.cronofy.revoke("u_1")
    world.store.put_mirror_if_newer("org_1", "m_1", 1, milestone().model_dump_json())
    result = world.engine.sync(["m_1"])
    assert world.tokens.reauth == [("u_1", "authorization_revoked")] and not result.failed
    assert world.store.get_connection("u_1").state == ConnectionState.NEEDS_REAUTH

    world = World()
    world.connect("u_1")
    world.cronofy.outage = 422
    world.store.put_mirror_if_newer("org_1", "m_1", 1, milestone().model_dump_json())
    result = world.engine.sync(["m_1"])
    assert result.failed == {"m_1"} and world.store.get_ref("m_1", "u_1") is None
    world.cronofy.outage = 503
    result = world.engine.sync(["m_1"])
    assert result.failed == {"m_1"} and len(result.errors) == 1


def test_writes_go_in_batches_of_fifty_per_user():
    world = World()
    world.connect("u_1")
    ids = []
    for i in range(120):
        m = milestone(f"m_{i}")
        world.store.put_mirror_if_newer("org_1", m.milestone_id, 1, m.model_dump_json())
        ids.append(m.milestone_id)
    result = world.engine.sync(ids)
    assert result.written == 120 and result.cronofy_batches == 3
    assert [len(b) for b in world.cronofy.batches] == [50, 50, 20]
    assert json.loads(world.store.mirrors(["m_0"])["m_0"]["body"])["milestone_id"] == "m_0"


def test_a_calendar_that_refuses_every_write_asks_the_user_to_choose_or_reconnect():
    """403 (deleted or read-only calendar) or 404 to an upsert: choose a calendar again; 423 (the profile
    lost its provider link): reconnect. Neither is retried by the queue: the fix's backfill restores it."""
    for status, unwritable, state, reason in (
            (403, True, ConnectionState.PENDING_CALENDAR, "calendar_not_writable"),  # listed read-only now
            (403, False, ConnectionState.NEEDS_REAUTH, "write_refused"),  # still writable: a scope is missing
            (404, False, ConnectionState.PENDING_CALENDAR, "calendar_not_writable"),
            (423, False, ConnectionState.NEEDS_REAUTH, "profile_disconnected")):
        world = World()
        conn = world.connect("u_1")
        if unwritable:
            world.cronofy.accounts["u_1"].unwritable.add(conn.calendar_id)
        world.cronofy.outage = status
        world.store.put_mirror_if_newer("org_1", "m_1", 1, milestone().model_dump_json())
        result = world.engine.sync(["m_1"])
        assert not result.failed and world.store.get_ref("m_1", "u_1") is None, status
        conn = world.store.get_connection("u_1")
        assert (conn.state, conn.last_error) == (state, reason), (status, unwritable)
        assert world.tokens.reauth == [("u_1", reason)]


def test_a_long_assignment_is_recorded_whatever_changed_and_never_beyond_the_cap():
    """Crew availability looks back by each user's longest assignment: an end moved later (the index,
    by start, does not change) is recorded too, and a typo'd end counts as LONGEST_ASSIGNMENT."""
    from calsync.slots import LONGEST_ASSIGNMENT

    world = World()
    world.connect("u_1")
    start = (utcnow() + timedelta(days=3)).replace(minute=0, second=0)
    world.publish(milestone(start=start, hours=3 * 24))
    assert world.store.longest_assignments(["u_1"])["u_1"] == timedelta(days=7)  # short: the default
    world.publish(milestone(version=2, start=start, hours=20 * 24))  # same start, later end
    assert world.store.longest_assignments(["u_1"])["u_1"] == timedelta(days=20)
    world.publish(milestone(version=3, start=start, end="2090-01-01T00:00:00Z"))
    assert world.store.longest_assignments(["u_1"])["u_1"] == LONGEST_ASSIGNMENT


def test_a_write_is_recorded_when_cronofy_accepted_it_not_when_it_was_planned(monkeypatch):
    """Cronofy stamps an event's `updated` when it applies our write, after the request arrived. On a loaded
    machine the trip from planning to Cronofy can take seconds: recorded at planning, our own write looked
    like a change the user made after it (drift.APPLY_LAG), and the reconciler reported it instead of
    repairing it (issue 22, item 9)."""
    from calsync import sync as sync_module
    from calsync.cronofy_event import CronofyEvent
    from calsync.drift import APPLY_LAG, changed_after_our_write

    now = [NOW]
    world = World()
    world.cronofy.clock = lambda: now[0]
    monkeypatch.setattr(sync_module, "utcnow", lambda: now[0])
    world.connect("u_1")
    receive = world.cronofy.batch

    def slow_trip(account, entries):
        now[0] += APPLY_LAG + timedelta(seconds=7)  # the request reaches Cronofy 10 s after the plan
        return receive(account, entries)

    monkeypatch.setattr(world.cronofy, "batch", slow_trip)
    world.publish(milestone(start=NOW + timedelta(days=2)))
    ref = world.store.get_ref("m_1", "u_1")
    event = CronofyEvent.of(world.cronofy.find("u_1", ref.event_id).as_read())
    assert ref.updated_at == event.updated_at == NOW + timedelta(seconds=10)
    assert not changed_after_our_write(event, ref)
