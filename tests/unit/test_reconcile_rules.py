"""The reconciler's and the busy periods' rules, without AWS or Cronofy (milliseconds)."""

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from calsync.busy import Busy, busy_period, event_key, merge, week_of, weeks_between
from calsync.models import (
    CHECK_EVERY,
    EARLY_CHECK_AFTER,
    STUCK_AFTER,
    Connection,
    ConnectionState,
)
from calsync.reconcile import BUSY_REBUILD_EVERY, CHANNEL_CHECK_EVERY, plan_visit

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def conn(**fields) -> Connection:
    base = {"user_id": "u_1", "org_id": "org_1", "state": ConnectionState.CONNECTED, "provider": "google",
            "cronofy_sub": "acc_1", "calendar_id": "cal_1", "connected_at": NOW - timedelta(days=30),
            "updated_at": NOW - timedelta(days=1)}
    return Connection(**(base | fields))


def test_a_connected_user_is_due_a_day_after_the_last_check_or_earlier_when_asked():
    checked = conn(last_checked_at=NOW - timedelta(hours=3))
    assert checked.due_at() == NOW - timedelta(hours=3) + CHECK_EVERY
    assert checked.model_copy(update={"visit_requested_at": NOW}).due_at() == NOW
    # a failed visit waits for its retry time even when asked earlier
    assert checked.model_copy(update={"visit_requested_at": NOW, "reconcile_retry_at": NOW + timedelta(hours=1)}
                              ).due_at() == NOW + timedelta(hours=1)
    assert conn(last_checked_at=None).due_at() == conn().connected_at + CHECK_EVERY


def test_only_states_that_need_the_reconciler_are_due():
    assert conn(state=ConnectionState.NEEDS_REAUTH).due_at() is None
    assert conn(state=ConnectionState.PENDING_CALENDAR, calendar_id=None).due_at() is None
    stuck = conn(state=ConnectionState.DISCONNECTING, updated_at=NOW)
    assert stuck.due_at() == NOW + STUCK_AFTER
    assert conn(state=ConnectionState.SYNCING, updated_at=NOW).due_at() == NOW + STUCK_AFTER


def test_a_visit_checks_daily_and_lists_channels_and_rebuilds_busy_weekly():
    quiet = conn(channel_seen_at=NOW - timedelta(minutes=30), busy_rebuilt_at=NOW - timedelta(days=1))
    assert plan_visit(quiet, NOW).check and not plan_visit(quiet, NOW).channel and not plan_visit(quiet, NOW).busy
    silent = quiet.model_copy(update={"channel_seen_at": NOW - CHANNEL_CHECK_EVERY})
    assert plan_visit(silent, NOW).channel
    old_busy = quiet.model_copy(update={"busy_rebuilt_at": NOW - BUSY_REBUILD_EVERY})
    assert plan_visit(old_busy, NOW).busy
    assert plan_visit(quiet.model_copy(update={"busy_rebuilt_at": None}), NOW).busy  # never built
    cleanup = conn(state=ConnectionState.DISCONNECTING, updated_at=NOW - STUCK_AFTER)
    assert plan_visit(cleanup, NOW).requeue_cleanup and not plan_visit(cleanup, NOW).check
    fresh = conn(state=ConnectionState.DISCONNECTING, updated_at=NOW - timedelta(minutes=1))
    assert not plan_visit(fresh, NOW).requeue_cleanup
    assert plan_visit(conn(state=ConnectionState.SYNCING, updated_at=NOW - STUCK_AFTER), NOW).restart_backfill


def test_a_notifications_read_is_the_check_when_a_full_read_costs_no_more_or_the_check_is_half_a_day_old():
    assert conn(last_checked_at=NOW - timedelta(minutes=5)).check_rides_on_read(NOW)  # cost not known: learn it
    one_page = conn(last_checked_at=NOW - timedelta(minutes=5), full_read_pages=1)
    assert one_page.check_rides_on_read(NOW)  # one page either way: always the check
    big = one_page.model_copy(update={"full_read_pages": 3})
    assert not big.check_rides_on_read(NOW)  # three pages against the changed events' one
    assert not big.model_copy(update={"last_checked_at": NOW - EARLY_CHECK_AFTER + timedelta(minutes=1)}
                              ).check_rides_on_read(NOW)
    assert big.model_copy(update={"last_checked_at": NOW - EARLY_CHECK_AFTER}).check_rides_on_read(NOW)


def test_busy_period_rules():
    base = {"event_uid": "evt_1", "start": "2026-12-02T10:00:00Z", "end": "2026-12-02T11:00:00Z"}
    assert busy_period(base) == "2026-12-02T10:00:00Z/2026-12-02T11:00:00Z"
    assert busy_period(base | {"transparency": "transparent"}) is None  # "Show as Free"
    assert busy_period(base | {"status": "tentative"}) is not None
    assert busy_period(base | {"status": "cancelled"}) is None
    assert busy_period(base | {"participation_status": "declined"}) is None
    assert busy_period(base | {"deleted": True}) is None
    assert busy_period(base | {"end": base["start"]}) is None
    assert event_key(base) == event_key(base | {"start": "2026-12-03T10:00:00Z"})  # a move keeps its key
    # Occurrences of a series have their own uids: each its own key, kept when that occurrence moves
    occurrence = base | {"recurring": True, "series_identifier": "s1"}
    assert event_key(occurrence) == event_key(occurrence | {"start": "2026-12-02T15:00:00Z"})
    assert event_key(occurrence) != event_key(occurrence | {"event_uid": "evt_2", "start": "2026-12-09T10:00:00Z"})


class MemoryWeeks:
    """The BusyStore interface on a dict (what busy.py needs of storage)."""

    def __init__(self):
        self.weeks: dict[str, dict] = {}

    def weeks_of_user(self, user_id):
        return {w: {"periods": dict(p)} for w, p in self.weeks.items()}

    def write_weeks(self, user_id, org_id, weeks, updated_at, expires_at, previous=None, unsure=None):
        for week, periods in weeks.items():
            if periods:
                self.weeks[week] = dict(periods)
            else:
                self.weeks.pop(week, None)

    def touch(self, *args):
        pass


def _intervals(store: MemoryWeeks):
    from calsync.busy import _instant

    pairs = {p for periods in store.weeks.values() for p in periods.values()}
    return merge([tuple(_instant(x) for x in p.split("/")) for p in pairs])


times = st.integers(min_value=0, max_value=60 * 24 * 40).map(lambda m: NOW + timedelta(minutes=m))


@settings(deadline=None)  # a loaded machine must not fail it on time
@given(st.lists(st.tuples(st.integers(0, 8), times, st.integers(15, 60 * 24 * 9), st.booleans(), st.booleans()),
                max_size=40))
def test_applying_changes_one_by_one_equals_the_final_calendar(changes):
    """Whatever order of creates, moves, 'Show as Free' and deletes, the stored periods equal the busy
    time of the events as they finally are (an event spanning weeks included)."""
    store, busy = MemoryWeeks(), Busy(MemoryWeeks())
    busy.store = store
    final: dict[int, dict] = {}
    c = conn()
    for uid, start, minutes, free, deleted in changes:
        event = {"event_uid": f"evt_{uid}", "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "end": (start + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "transparency": "transparent" if free else "opaque", "deleted": deleted,
                 "recurring": uid % 2 == 0}  # an occurrence of a series moves like any event
        busy.apply(c, [event], NOW)
        final[uid] = event
    expected = merge([(datetime.fromisoformat(e["start"].replace("Z", "+00:00")),
                       datetime.fromisoformat(e["end"].replace("Z", "+00:00")))
                      for e in final.values() if busy_period(e)])
    assert _intervals(store) == expected
    for week, periods in store.weeks.items():  # each period sits only in the weeks it overlaps
        for p in periods.values():
            s, e = (datetime.fromisoformat(x.replace("Z", "+00:00")) for x in p.split("/"))
            assert week in weeks_between(s, e)


def test_weeks_start_on_monday():
    assert week_of(datetime(2026, 12, 6, 23, tzinfo=UTC)) == "2026-11-30"
    assert weeks_between(datetime(2026, 11, 29, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)) == [
        "2026-11-23", "2026-11-30"]
