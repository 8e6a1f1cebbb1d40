"""Conflict alerts (issue 23): the pure rule (calsync.conflicts) and the watch that applies it
(calsync.conflict_watch) on the fakes (the real store over in-memory DynamoDB, the real busy periods and
notification processor, a fake Cronofy), including a property over generated histories:

for any sequence of busy-time changes (added, moved, deleted, "Show as Free", tentative), milestone
versions (moved, reassigned, unscheduled, deleted; delivered late and twice) and notifications (delivered
twice), the open conflicts after the last message equal the overlaps computed from scratch, each told
by exactly one detection, and every detection is followed by at most one resolution.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from calsync.conflict_watch import resolve_all
from calsync.conflicts import Assignment, Conflict, judge, overlap, span_of
from calsync.models import ConnectionState, utcnow
from tests.fakes.world import ORG, World, milestone

T0 = datetime(2026, 12, 10, 15, tzinfo=UTC)
SEEN = (T0 - timedelta(days=30), T0 + timedelta(days=30))


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def known(span=(h(0), h(2)), over=(h(1), h(2)), version=1) -> Conflict:
    return Conflict(ORG, "u_1", "m_1", "cfl_1", "open", version, span, over, T0)


# ---- the pure rule --------------------------------------------------------------------------------

def test_the_overlap_is_the_union_of_busy_periods_clipped_to_the_milestone():
    span = (h(0), h(4))
    assert overlap(span, [(h(-1), h(1)), (h(3), h(9))], SEEN) == (h(0), h(4))
    assert overlap(span, [(h(1), h(2)), (h(1.5), h(2.5))], SEEN) == (h(1), h(2.5))
    assert overlap(span, [(h(4), h(5)), (h(-2), h(0))], SEEN) is None  # touching is not overlapping
    assert overlap(span, [(h(1), h(2))], (h(2), h(9))) is None  # busy time not known there


def test_all_day_milestones_are_read_in_their_own_zone():
    start, end = span_of("2026-12-10", "2026-12-10", True, "America/Los_Angeles")
    assert (start, end) == (datetime(2026, 12, 10, 8, tzinfo=UTC), datetime(2026, 12, 11, 8, tzinfo=UTC))


def test_judge_detects_once_and_a_changed_overlap_is_not_a_new_conflict():
    a = Assignment("m_1", 1, h(0), h(2))
    assert judge(None, "assigned", a, [(h(1), h(3))], SEEN).action == "detect"
    assert judge(known(), "assigned", a, [(h(1), h(3))], SEEN).action == "none"
    moved_busy = judge(known(), "assigned", a, [(h(0.5), h(1))], SEEN)
    assert (moved_busy.action, moved_busy.overlap) == ("update", (h(0.5), h(1)))
    assert judge(None, "unassigned", None, [(h(1), h(3))], SEEN).action == "none"


def test_judge_says_why_a_conflict_ended():
    a = Assignment("m_1", 2, h(0), h(2))
    assert judge(known(), "assigned", a, [], SEEN).why == "busy_time_gone"
    assert judge(known(), "assigned", Assignment("m_1", 2, h(5), h(7)), [(h(1), h(2))], SEEN).why == "milestone_moved"
    assert judge(known(), "unassigned", None, [(h(1), h(2))], SEEN).why == "unassigned"
    assert judge(known(), "unscheduled", None, [(h(1), h(2))], SEEN).why == "milestone_unscheduled"
    assert judge(known(), "disconnected", None, [(h(1), h(2))], SEEN).why == "disconnected"
    # a multi-day milestone still running whose overlap is older than the busy periods kept: left alone
    assert judge(known(), "assigned", Assignment("m_1", 1, h(0), h(2)), [], (h(3), h(90))).action == "none"


# ---- the watch on the fakes -------------------------------------------------------------------------

def at(days: float, hour: float) -> datetime:
    base = (utcnow() + timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    return base + timedelta(hours=hour)


def z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def fresh_world(*users: str) -> World:
    w = World()
    for n, user_id in enumerate(users or ("u_1",)):
        # full_read_pages 3: a notification reads the changed events (not the day's check)
        w.connect(user_id, f"cal_{n}", full_read_pages=3, last_checked_at=utcnow() - timedelta(hours=1))
    return w


def told(w: World, kind: str) -> list:
    return w.publisher.changes(f"calendar.conflict_{kind}")


def test_a_dentist_during_an_install_is_told_once_and_show_as_free_never():
    w = fresh_world()
    w.publish(milestone("m_1", 3, ("u_1",), start=at(3, 15), hours=3))
    w.cronofy.user_adds("u_1", "cal_0", z(at(3, 16)), z(at(3, 17)), transparency="transparent")
    w.notify("u_1")
    assert told(w, "detected") == []
    dentist = w.cronofy.user_adds("u_1", "cal_0", z(at(3, 16)), z(at(3, 17)), status="tentative")
    w.notify("u_1")
    w.notify("u_1")  # Cronofy's duplicate
    detected = told(w, "detected")
    assert [(d.milestone_id, d.user_id, d.milestone_version) for d in detected] == [("m_1", "u_1", 3)]
    assert (detected[0].overlap.start, detected[0].overlap.end) == (z(at(3, 16)), z(at(3, 17)))
    _move_own(w, "u_1", dentist.event_uid, z(at(3, 17)), z(at(3, 19)), {"status": "tentative"})  # still inside
    w.notify("u_1")
    assert len(told(w, "detected")) == 1 and told(w, "resolved") == []
    stored = w.store.conflicts_of_user(ORG, "u_1")["m_1"]
    assert stored.overlap == (at(3, 17), at(3, 18)) and stored.conflict_id == detected[0].conflict_id
    _move_own(w, "u_1", dentist.event_uid, z(at(3, 19)), z(at(3, 20)), {})
    w.notify("u_1")
    assert [(r.conflict_id, r.why) for r in told(w, "resolved")] == [(detected[0].conflict_id, "busy_time_gone")]
    assert w.store.conflicts_of_user(ORG, "u_1") == {}


def test_a_milestone_placed_on_known_busy_time_is_detected_at_once_and_stale_versions_change_nothing():
    w = fresh_world()
    w.cronofy.user_adds("u_1", "cal_0", z(at(3, 9)), z(at(3, 12)))
    w.notify("u_1")
    w.publish(milestone("m_1", 1, ("u_1",), start=at(3, 11), hours=2))
    assert len(told(w, "detected")) == 1
    w.publish(milestone("m_1", 1, ("u_1",), start=at(3, 11), hours=2))  # repeated
    w.publish(milestone("m_1", 3, ("u_1",), start=at(3, 10), hours=4))  # still on it: no new conflict
    w.publish(milestone("m_1", 2, ("u_1",), start=at(3, 14), hours=1))  # late: the mirror keeps version 3
    assert len(told(w, "detected")) == 1 and told(w, "resolved") == []
    assert w.store.conflicts_of_user(ORG, "u_1")["m_1"].milestone_version == 3
    w.publish(milestone("m_1", 4, ("u_1",), start=at(3, 14), hours=1))
    assert [r.why for r in told(w, "resolved")] == ["milestone_moved"]


def test_each_way_a_milestone_conflict_ends_is_told():
    w = fresh_world("u_1", "u_2")
    for user_id, cal in (("u_1", "cal_0"), ("u_2", "cal_1")):
        w.cronofy.user_adds(user_id, cal, z(at(3, 9)), z(at(3, 12)))
        w.notify(user_id)
    w.publish(milestone("m_a", 1, ("u_1", "u_2"), start=at(3, 10)))
    w.publish(milestone("m_b", 1, ("u_1",), start=at(3, 10)))
    w.publish(milestone("m_c", 1, ("u_1",), start=at(3, 10)))
    assert len(told(w, "detected")) == 4
    w.publish(milestone("m_a", 2, ("u_2",), start=at(3, 10)))  # u_1 unassigned
    w.publish(milestone("m_b", 2, ("u_1",), start=at(3, 10), status="unscheduled"))
    w.delete("m_c", 2)
    resolve_all(w.store, w.publisher, ORG, "u_2")  # what the disconnect's cleanup does
    why = {(r.milestone_id, r.user_id): r.why for r in told(w, "resolved")}
    assert why == {("m_a", "u_1"): "unassigned", ("m_b", "u_1"): "milestone_unscheduled",
                   ("m_c", "u_1"): "milestone_unscheduled", ("m_a", "u_2"): "disconnected"}


def test_judging_makes_no_cronofy_request():
    w = fresh_world()
    w.cronofy.user_adds("u_1", "cal_0", z(at(3, 9)), z(at(3, 12)))
    w.notify("u_1")
    before = w.cronofy.requests_sent
    w.publish(milestone("m_1", 1, ("u_1",), start=at(3, 11), hours=2, assignee_user_ids=["u_1"]))
    writes = w.cronofy.requests_sent - before  # the calendar write of the milestone itself
    conn = w.store.get_connection("u_1")
    assert conn is not None
    w.conflicts.user_changed(conn)
    w.conflicts.milestones_changed(["m_1"])
    assert w.cronofy.requests_sent - before == writes and len(told(w, "detected")) == 1


# ---- the property ----------------------------------------------------------------------------------

USERS = ("u_1", "u_2")
MILESTONES = ("m_1", "m_2")
BASE = (utcnow() + timedelta(days=3)).replace(hour=8, minute=0, second=0, microsecond=0)
SLOT = st.tuples(st.integers(0, 10), st.integers(1, 3))  # (hours after BASE, hours long)

busy_step = st.tuples(st.just("busy"), st.sampled_from(USERS), st.integers(0, 3), st.one_of(st.none(), SLOT),
                      st.sampled_from(["opaque", "opaque", "transparent", "tentative"]), st.booleans())
milestone_step = st.tuples(st.just("milestone"), st.sampled_from(MILESTONES),
                           st.lists(st.sampled_from(USERS), unique=True, max_size=2), SLOT,
                           st.sampled_from(["scheduled", "scheduled", "scheduled", "unscheduled", "deleted"]),
                           st.booleans())
disconnect_step = st.tuples(st.just("disconnect"), st.sampled_from(USERS))


def _interval(slot) -> tuple[datetime, datetime]:
    start = BASE + timedelta(hours=slot[0])
    return start, start + timedelta(hours=slot[1])


class Model:
    """The truth, kept apart from the service: each user's calendar events and each milestone's newest version."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, int], tuple[str, tuple[datetime, datetime], str]] = {}  # -> uid, span, kind
        self.milestones: dict[str, tuple[int, tuple[str, ...], tuple[datetime, datetime], str]] = {}
        self.left: set[str] = set()

    def expected(self) -> dict[tuple[str, str], tuple[datetime, datetime]]:
        found = {}
        for mid, (_, assignees, span, status) in self.milestones.items():
            if status != "scheduled":
                continue
            for user_id in assignees:
                if user_id in self.left:
                    continue
                busy = [s for (u, _), (_, s, kind) in self.events.items() if u == user_id and kind != "transparent"]
                covered = overlap(span, busy, (BASE - timedelta(days=1), BASE + timedelta(days=50)))
                if covered is not None:
                    found[(mid, user_id)] = covered
        return found


def _busy_step(w: World, model: Model, step) -> None:
    _, user_id, n, slot, kind, twice = step
    if user_id in model.left:
        return
    cal = f"cal_{USERS.index(user_id)}"
    had = model.events.get((user_id, n))
    if slot is None:
        if had is None:
            return
        _delete_own(w, user_id, had[0])
        del model.events[(user_id, n)]
    else:
        start, end = _interval(slot)
        fields = {"transparency": "transparent"} if kind == "transparent" else (
            {"status": "tentative"} if kind == "tentative" else {})
        if had is None:
            uid = w.cronofy.user_adds(user_id, cal, z(start), z(end), **fields).event_uid
        else:
            uid = had[0]
            _move_own(w, user_id, uid, z(start), z(end), fields)
        model.events[(user_id, n)] = (uid, (start, end), kind)
    w.notify(user_id)
    if twice:
        w.notify(user_id)  # delivered again


def _own(w: World, user_id: str, uid: str):
    return next(e for e in w.cronofy.events(user_id) if e.event_uid == uid)


def _delete_own(w: World, user_id: str, uid: str) -> None:
    event = _own(w, user_id, uid)
    event.deleted, event.status, event.updated = True, "cancelled", w.cronofy.clock()
    w.cronofy.record(user_id, event, "user", "delete")


def _move_own(w: World, user_id: str, uid: str, start: str, end: str, fields: dict) -> None:
    event = _own(w, user_id, uid)
    event.start, event.end, event.updated = start, end, w.cronofy.clock()
    event.transparency = fields.get("transparency", "opaque")
    event.status = fields.get("status", "confirmed")
    w.cronofy.record(user_id, event, "user", "upsert")


def _milestone_step(w: World, model: Model, step, version: int) -> None:
    _, mid, assignees, slot, status, late_copy = step
    start, end = _interval(slot)
    if status == "deleted":
        w.delete(mid, version)
    else:
        w.publish(milestone(mid, version, tuple(assignees), start=start, hours=slot[1], status=status))
    before = model.milestones.get(mid)
    model.milestones[mid] = (version, tuple(assignees), (start, end), status)
    if late_copy and before is not None:  # the previous version arrives again, late
        old_version, old_assignees, old_span, old_status = before
        if old_status == "deleted":
            w.delete(mid, old_version)
        else:
            w.publish(milestone(mid, old_version, old_assignees, start=old_span[0],
                                hours=int((old_span[1] - old_span[0]).total_seconds() // 3600), status=old_status))


def _disconnect(w: World, model: Model, user_id: str) -> None:
    w.store.update_connection(user_id, lambda c: c.model_copy(update={"state": ConnectionState.DISCONNECTING}))
    resolve_all(w.store, w.publisher, ORG, user_id)
    model.left.add(user_id)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(busy_step, busy_step, milestone_step, milestone_step, disconnect_step), max_size=14))
@example([("busy", "u_1", 0, (2, 2), "opaque", False), ("milestone", "m_1", ["u_1"], (1, 3), "scheduled", False),
          ("milestone", "m_1", [], (1, 3), "scheduled", True)])  # the unassigned user's conflict ends
def test_open_conflicts_equal_the_overlaps_from_scratch_and_each_is_told_once(steps):
    w = fresh_world(*USERS)
    model = Model()
    versions: dict[str, int] = defaultdict(int)
    for step in steps:
        if step[0] == "busy":
            _busy_step(w, model, step)
        elif step[0] == "milestone":
            versions[step[1]] += 1
            _milestone_step(w, model, step, versions[step[1]])
        elif step[1] not in model.left:
            _disconnect(w, model, step[1])
    stored = {(c.milestone_id, c.user_id): c for c in w.store.conflicts_of_org(ORG)}
    assert {k: c.overlap for k, c in stored.items()} == model.expected()
    assert all(c.state == "open" for c in stored.values())
    # Per (milestone, user): detected, resolved, detected, ... each conflict id told once each way.
    history: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for m in w.publisher.sent:
        if getattr(m, "type", "").startswith("calendar.conflict_"):
            history[(m.milestone_id, m.user_id)].append((m.type.rsplit("_", 1)[1], m.conflict_id))
    for pair, said in history.items():
        alternating = ["detected", "resolved"] * (len(said) // 2) + ["detected"] * (len(said) % 2)
        assert [kind for kind, _ in said] == alternating
        assert all(said[i][1] == said[i + 1][1] for i in range(0, len(said) - 1, 2))  # a resolution names its detection
        assert len({cid for _, cid in said}) == (len(said) + 1) // 2
        assert (pair in stored) == (len(said) % 2 == 1)
        if pair in stored:
            assert stored[pair].conflict_id == said[-1][1]


def test_dynamodb_work_per_busy_change_is_a_few_requests_whatever_the_number_of_assignments(monkeypatch):
    """user_changed: 1 BatchGetItem of the longest assignment, 1 query of by_assignee, 1 query of the user's
    conflicts, 1 BatchGetItem of mirrors (per 100 milestones), 1 BatchGetItem of busy weeks; no write when
    nothing changed. Items read grow with the user's assignments in the busy window, requests do not."""
    w = fresh_world()
    w.cronofy.user_adds("u_1", "cal_0", z(at(3, 9)), z(at(3, 12)))
    w.notify("u_1")
    for n in range(40):
        w.publish(milestone(f"m_{n}", 1, ("u_1",), start=at(2 + n, 13), hours=2))
    w.publish(milestone("m_far", 1, ("u_1",), start=at(90, 10), hours=2))  # past the busy window
    conn = w.store.get_connection("u_1")
    assert conn is not None
    db = w.store.table.client
    calls: list[str] = []
    for name in ("get_item", "put_item", "delete_item", "update_item", "query", "batch_get_item",
                 "batch_write_item", "transact_write_items"):
        original = getattr(db, name)
        monkeypatch.setattr(db, name, lambda *a, _o=original, _n=name, **k: (calls.append(_n), _o(*a, **k))[1])
    w.conflicts.user_changed(conn)
    assert sorted(calls) == ["batch_get_item"] * 3 + ["query"] * 2
    assert told(w, "detected") == []


def test_another_orgs_milestone_naming_the_user_is_never_a_conflict():
    w = fresh_world()
    w.cronofy.user_adds("u_1", "cal_0", z(at(3, 9)), z(at(3, 12)))
    w.notify("u_1")
    w.publish(milestone("m_x", 1, ("u_1",), start=at(3, 10)), org_id="org_2")
    conn = w.store.get_connection("u_1")
    assert conn is not None
    w.conflicts.user_changed(conn)
    assert told(w, "detected") == [] and w.store.conflicts_of_org("org_2") == []
