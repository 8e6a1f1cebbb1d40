"""Issue 20, findings 4 and 5, the pure rules of busy storage: what a period is stored in (the window's
weeks only, whatever its length) and the stored form of a week (its events while they fit one item, else
merged blocks, else coarser ones): bounded, and never less busy than the calendar."""

from __future__ import annotations

import bisect
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calsync import busy as rules
from calsync.busy import (
    Busy,
    _instant,
    is_merged,
    merge,
    stored_weeks,
    week_form,
    weeks_between,
    window_bounds,
)
from calsync.models import Connection, ConnectionState
from calsync.repositories.busy import ONE_ITEM, WEEK_CAPACITY, chunks, periods_size
from tests.unit.test_reconcile_rules import MemoryWeeks

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WEEK = "2026-12-07"
MONDAY = datetime(2026, 12, 7, tzinfo=UTC)


def z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def covered(periods) -> list[tuple[datetime, datetime]]:
    return merge(tuple(_instant(x) for x in p.split("/")) for p in periods)


def within(inner: list[tuple[datetime, datetime]], outer: list[tuple[datetime, datetime]]) -> bool:
    """Every interval of `inner` lies inside one of `outer` (merged, sorted)."""
    starts = [s for s, _ in outer]
    for s, e in inner:
        i = bisect.bisect_right(starts, s) - 1
        if i < 0 or outer[i][1] < e:
            return False
    return True


FAR = [datetime(9999, 12, 31, tzinfo=UTC), datetime(2226, 3, 1, tzinfo=UTC)]


@given(start=st.integers(-60 * 24 * 30, 60 * 24 * 90).map(lambda m: NOW + timedelta(minutes=m)),
       end=st.integers(1, 60 * 24 * 400) | st.sampled_from(FAR))
def test_a_period_is_stored_only_in_the_weeks_of_the_window_whatever_its_end(start, end):
    end = start + timedelta(minutes=end) if isinstance(end, int) else end
    first, last = window_bounds(NOW)
    weeks = stored_weeks(start, end, first, last)
    assert len(weeks) <= 10  # 61 days touch at most 10 weeks
    if start < last and end > first:
        assert weeks == weeks_between(max(start, first), min(end, last))
    else:
        assert weeks == []


def blocks_in_week(draw_minutes: list[tuple[int, int]]) -> dict[str, str]:
    out = {}
    for i, (offset, length) in enumerate(draw_minutes):
        start = MONDAY + timedelta(minutes=offset)
        out[f"{i:016x}"] = f"{z(start)}/{z(start + timedelta(minutes=length))}"
    return out


minutes = st.lists(st.tuples(st.integers(-600, 7 * 24 * 60 + 600), st.integers(1, 240)), min_size=1, max_size=120)


@settings(deadline=None, max_examples=60)
@given(minutes=minutes, one_item=st.sampled_from([200, 1_000, 4_000]), parts=st.sampled_from([1, 2, 4]))
def test_a_weeks_stored_form_is_bounded_and_never_less_busy(minutes, one_item, parts):
    """With small limits, so that merging and closing gaps both happen on small calendars."""
    periods = blocks_in_week(minutes)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rules, "ONE_ITEM", one_item)
        patch.setattr(rules, "WEEK_CAPACITY", one_item * parts)
        form = week_form(WEEK, periods)
    week = (MONDAY, MONDAY + timedelta(days=7))
    asked = [(max(s, week[0]), min(e, week[1])) for s, e in covered(periods.values()) if e > week[0] and s < week[1]]
    assert within(asked, covered(form.values()))  # never free where the calendar is busy
    if periods_size(periods) <= one_item:
        assert form == periods  # fits: each event kept, so a change or removal can be applied
    else:
        assert is_merged(form) and periods_size(form) <= one_item * parts
        exact = merge(asked)
        if periods_size({f"~{i}": f"{z(s)}/{z(e)}" for i, (s, e) in enumerate(exact)}) <= one_item * parts:
            assert covered(form.values()) == exact  # merged, not coarser, when merging is enough


def test_ten_thousand_one_minute_blocks_in_one_week_fit_one_item():
    periods = blocks_in_week([(i, 1) for i in range(10_000)])
    assert periods_size(periods) > ONE_ITEM
    form = week_form(WEEK, periods)
    assert covered(form.values()) == [(MONDAY, MONDAY + timedelta(minutes=10_000))] and len(chunks(form)) == 1


def test_a_week_of_blocks_too_many_to_merge_is_split_then_coarsened_never_free(monkeypatch):
    # Limits 100 times smaller than DynamoDB's, so that the test is quick: one-second blocks one second
    # apart cannot be stored even merged (at DynamoDB's size: 302,400 of them in a week)
    monkeypatch.setattr(rules, "ONE_ITEM", ONE_ITEM // 100)
    monkeypatch.setattr(rules, "WEEK_CAPACITY", WEEK_CAPACITY // 100)
    second = timedelta(seconds=1)
    periods = {f"{i:016x}": f"{z(MONDAY + 2 * i * second)}/{z(MONDAY + (2 * i + 1) * second)}" for i in range(3_024)}
    form = week_form(WEEK, periods)
    assert periods_size(form) <= WEEK_CAPACITY // 100 < periods_size(periods)
    kept = covered(form.values())
    assert 1 < len(kept) < 3_024 and kept[0][0] == MONDAY and kept[-1][1] == MONDAY + 6_047 * second
    assert within(covered(periods.values()), kept)  # the smallest gaps closed: busy, never free


def connection() -> Connection:
    return Connection(user_id="u_1", org_id="org_1", state=ConnectionState.CONNECTED, provider="google",
                      cronofy_sub="acc_1", calendar_id="cal_1", connected_at=NOW - timedelta(days=3),
                      updated_at=NOW)


def test_a_change_inside_a_merged_week_keeps_it_busy_and_unsure_until_a_rebuild():
    store = MemoryWeeks()
    store.unsure: set[str] = set()
    written = store.write_weeks

    def write_weeks(user_id, org_id, weeks, updated_at, expires_at, previous=None, unsure=None):
        written(user_id, org_id, weeks, updated_at, expires_at)
        store.unsure = (store.unsure - set(weeks)) | (unsure or set())

    store.write_weeks = write_weeks
    store.weeks_of_user = lambda user_id: {w: {"periods": dict(p), "unsure": w in store.unsure,
                                               "updated_at": z(NOW)} for w, p in store.weeks.items()}
    busy, c = Busy(store), connection()
    events = [{"event_uid": f"e{i}", "start": z(MONDAY + timedelta(minutes=i)),
               "end": z(MONDAY + timedelta(minutes=i + 1))} for i in range(7_200)]
    busy.rebuild_from(c, events, NOW)
    assert is_merged(store.weeks[WEEK]) and store.unsure == set()
    deleted = {**events[5], "deleted": True}
    busy.apply(c, [deleted], NOW)  # its minute cannot be taken out of the merged block
    assert covered(store.weeks[WEEK].values()) == [(MONDAY, MONDAY + timedelta(minutes=7_200))]
    assert store.unsure == {WEEK}
    busy.rebuild_from(c, [e for e in events if e["event_uid"] != "e5"], NOW)
    assert store.unsure == set() and len(covered(store.weeks[WEEK].values())) == 2
    # An event Cronofy created after the week was written cannot be inside its blocks: nothing unsure
    new = {"event_uid": "new", "created": z(NOW + timedelta(seconds=1)), "start": z(MONDAY + timedelta(days=6)),
           "end": z(MONDAY + timedelta(days=6, hours=1))}
    busy.apply(c, [new], NOW)
    assert store.unsure == set() and (MONDAY + timedelta(days=6), MONDAY + timedelta(days=6, hours=1)) in covered(
        store.weeks[WEEK].values())
    busy.apply(c, [{**new, "event_uid": "old", "created": z(NOW)}], NOW)  # not after: it may be inside
    assert store.unsure == {WEEK}


@settings(deadline=None, max_examples=20)
@given(sizes=st.lists(st.integers(1, 1000), min_size=1, max_size=50), spare=st.integers(0, 2_000))
def test_a_map_within_the_weeks_capacity_always_fits_its_items(sizes, spare):
    """chunks packs greedily in key order: whatever the entries (each under 1 KB), a map filled to
    WEEK_CAPACITY (less `spare` bytes) never needs more than MAX_PARTS items, each within one item."""
    from calsync.repositories.busy import MAX_PARTS, entry_size

    periods: dict[str, str] = {}
    total, i = 3, 0
    while True:
        key, value = f"~{i:06d}", "x" * sizes[i % len(sizes)]
        if total + entry_size(key, value) > WEEK_CAPACITY - spare:
            break
        periods[key], total, i = value, total + entry_size(key, value), i + 1
    pieces = chunks(periods)
    assert len(pieces) <= MAX_PARTS and all(periods_size(p) <= ONE_ITEM for p in pieces)
    assert {k: v for p in pieces for k, v in p.items()} == periods
