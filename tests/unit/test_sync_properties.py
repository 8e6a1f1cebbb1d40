"""Properties of the sync rules over many generated histories (hypothesis), on the fakes:

(a) whatever order, and however often, a milestone's versions arrive, its calendars end as the
    newest version alone would leave them;
(b) the echo of our own writes is never reported as a reschedule;
(c) a reassignment never leaves an event behind: an event is on a calendar exactly when its
    user is an assignee of the newest scheduled version;
(d) a notification's read that is the day's check repairs what the provider did silently and reports
    what the user did, each exactly once.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calsync.models import utcnow
from tests.fakes.world import World, milestone

USERS = ("u_1", "u_2", "u_3")
BASE = (utcnow() + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# One version of milestone m_1: its assignees, a start (hours from BASE), scheduled or not, or deleted.
version_content = st.tuples(
    st.lists(st.sampled_from(USERS), unique=True, max_size=3),
    st.integers(0, 24 * 20),
    st.sampled_from(["scheduled", "scheduled", "unscheduled", "deleted"]),
)


def world(full_read_pages: int | None = None) -> World:
    """Three connected users; `full_read_pages` 1: a notification reads everything (and is the day's
    check), 3: it reads the changed events (see Connection.check_rides_on_read)."""
    w = World()
    checked = None if full_read_pages is None else utcnow() - timedelta(hours=1)
    for n, user_id in enumerate(USERS):
        w.connect(user_id, f"cal_{n}", full_read_pages=full_read_pages, last_checked_at=checked)
    return w


def apply(w: World, version: int, content) -> None:
    assignees, hours, status = content
    if status == "deleted":
        w.delete("m_1", version)
        return
    w.publish(milestone("m_1", version, tuple(assignees), start=BASE + timedelta(hours=hours),
                        status=status, name=f"Install v{version}"))


def calendars(w: World) -> dict:
    return {u: w.cronofy.managed(u) for u in USERS}


@SETTINGS
@given(st.lists(version_content, min_size=1, max_size=5), st.data())
def test_any_order_and_repetition_of_versions_ends_in_the_newest_versions_calendar(contents, data):
    versions = list(enumerate(contents, start=1))
    arrivals = data.draw(st.lists(st.sampled_from(versions), min_size=1, max_size=8).map(lambda xs: xs + versions))
    arrivals = data.draw(st.permutations(arrivals))
    w = world()
    for version, content in arrivals:
        apply(w, version, content)
    only_newest = world()
    apply(only_newest, *versions[-1])
    assert calendars(w) == calendars(only_newest)


@SETTINGS
@given(st.lists(version_content, min_size=1, max_size=6), st.sampled_from([1, 3]))
def test_the_echo_of_our_own_writes_is_never_a_reschedule(contents, full_read_pages):
    w = world(full_read_pages)
    for version, content in enumerate(contents, start=1):
        apply(w, version, content)
        for user_id in USERS:  # every write's echo comes back as a change notification
            writes = len(w.cronofy.batches)
            assert w.notify(user_id)["reported"] == 0
            assert len(w.cronofy.batches) == writes  # and a read that is the check finds nothing to repair
    assert w.publisher.changes("milestone.rescheduled_on_calendar") == []
    assert w.publisher.changes("milestone.removed_on_calendar") == []


@SETTINGS
@given(st.lists(st.tuples(st.lists(st.sampled_from(USERS), unique=True, max_size=3), st.integers(0, 200)),
                min_size=1, max_size=6))
def test_a_reassignment_never_leaves_an_event_behind(assignments):
    w = world()
    for version, (assignees, hours) in enumerate(assignments, start=1):
        apply(w, version, (assignees, hours, "scheduled"))
        for n, user_id in enumerate(USERS):
            on_calendar = set(w.cronofy.managed(user_id))
            assert on_calendar == ({(f"cal_{n}", "sn-m_1")} if user_id in assignees else set())
            refs = {r.milestone_id for r in w.store.refs_of_user(user_id)}
            assert refs == ({"m_1"} if user_id in assignees else set())


# (d) a notification's read that is the day's check: whatever the provider did silently (lost or moved
#     events) and whatever the user did (moves, deletes), one read puts every silent change back, reports
#     every change of the user's exactly once and leaves it alone, and the next read finds nothing to do.
FATES = st.sampled_from(["kept", "lost", "drifted", "moved_by_user", "deleted_by_user"])


@SETTINGS
@given(st.lists(FATES, min_size=1, max_size=6))
def test_one_read_that_is_the_check_repairs_silent_drift_and_reports_each_user_change_once(fates):
    from calsync import drift

    w = World()
    w.connect("u_1", "cal_1", full_read_pages=1, last_checked_at=utcnow() - timedelta(hours=1))
    ids = [f"m_{i}" for i in range(len(fates))]
    for i, mid in enumerate(ids):
        w.publish(milestone(mid, 1, ("u_1",), start=BASE + timedelta(hours=3 * i)))
    pushed = w.cronofy.managed("u_1")
    w.cronofy.account("u_1").notified = len(w.cronofy.changes)  # their echo was notified and read
    for ref in w.store.refs_of_user("u_1"):  # our writes were a while ago (none is still in flight)
        w.store.put_ref(ref.model_copy(update={"updated_at": ref.updated_at - timedelta(minutes=10)}))
    for event in w.cronofy.events("u_1"):
        event.updated -= timedelta(minutes=10)
    calendar = w.cronofy.account("u_1").calendars["cal_1"]
    expected = dict(pushed)
    for mid, fate in zip(ids, fates, strict=True):
        event = w.cronofy.find("u_1", f"sn-{mid}")
        key = ("cal_1", f"sn-{mid}")
        if fate == "lost":  # gone with no trace and no notification
            calendar.pop(event.event_uid)
        elif fate == "drifted":  # the provider changed it, Cronofy's `updated` did not move
            event.start = (BASE + timedelta(days=9)).strftime("%Y-%m-%dT%H:%M:%SZ")
        elif fate == "moved_by_user":
            start, end = (BASE + timedelta(days=5)), (BASE + timedelta(days=5, hours=2))
            w.cronofy.user_moves("u_1", event.event_id, *(t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in (start, end)))
            expected[key] = (event.summary, event.start, event.end)
        elif fate == "deleted_by_user":
            w.cronofy.user_deletes("u_1", event.event_id)
            del expected[key]
    w.cronofy.user_adds("u_1", "cal_1", BASE.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        (BASE + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))  # a notification comes
    original = drift.RECENT_WRITE
    drift.RECENT_WRITE = timedelta(0)
    try:
        result = w.notify("u_1")
        assert w.cronofy.managed("u_1") == expected
        assert result["reported"] == sum(f in ("moved_by_user", "deleted_by_user") for f in fates)
        assert len(w.publisher.changes("milestone.rescheduled_on_calendar")) == fates.count("moved_by_user")
        assert len(w.publisher.changes("milestone.removed_on_calendar")) == fates.count("deleted_by_user")
        writes = len(w.cronofy.batches)
        w.store.update_connection("u_1", lambda c: c.model_copy(update={"last_checked_at": None}))
        again = w.reconciler.visit("u_1")  # a full check right after: nothing left to do
        assert again["reported"] == 0 and len(w.cronofy.batches) == writes
        assert w.cronofy.managed("u_1") == expected
    finally:
        drift.RECENT_WRITE = original
