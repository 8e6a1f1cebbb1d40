"""Crew slot finding (calsync.slots) against a brute-force reference, minute by minute.

The reference shares no code with calsync.slots: it decides every minute of a slot separately (is it
a working minute of that member's local day, is it within `buffer` of a busy block or an
assignment) and finds a day's working window by scanning the clock minute by minute.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from itertools import accumulate
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from calsync.slots import Assignment, Member, SlotQuery, WorkingHours, find_slots, local_instant

MINUTE = timedelta(minutes=1)
# Zones with whole-hour, half-hour, 45-minute and 30-minute DST offsets, east and west of UTC.
ZONES = ["UTC", "America/Los_Angeles", "America/New_York", "America/St_Johns", "Europe/London", "Europe/Berlin",
         "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Chatham", "Pacific/Honolulu", "Pacific/Kiritimati",
         "Pacific/Pago_Pago", "Asia/Tokyo"]
# Weeks around 2026's DST changes (US 8 Mar / 1 Nov, EU 29 Mar / 25 Oct, Lord Howe and Chatham
# 5 Apr / 27 Sep) and a quiet one.
BASES = [date(2026, 3, 6), date(2026, 3, 27), date(2026, 4, 3), date(2026, 9, 25), date(2026, 10, 23),
         date(2026, 10, 30), date(2026, 6, 15)]


# ---- the reference -------------------------------------------------------------------------------


@cache
def ref_window_edge(day: date, wall: time, zone_name: str) -> datetime:
    """First minute at which the clock in the zone shows `day` and `wall` or later, by scanning."""
    zone = ZoneInfo(zone_name)
    u = datetime.combine(day, time(0), UTC) - timedelta(hours=15)
    while True:
        local = u.astimezone(zone)
        if local.date() > day or (local.date() == day and local.time() >= wall):
            return u
        u += MINUTE


def ref_minute_ok(member: Member, u: datetime, query: SlotQuery) -> bool:
    local = u.astimezone(member.zone)
    day = local.date()
    if day.isoweekday() not in member.hours.weekdays:
        return False
    name = member.zone.key
    if not ref_window_edge(day, member.hours.start, name) <= u < ref_window_edge(day, member.hours.end, name):
        return False
    periods = list(member.busy) + [(a.start, a.end) for a in member.assignments
                                   if a.milestone_id != query.ignore_milestone_id]
    return not any(s - query.buffer <= u < e + query.buffer for s, e in periods)


def ref_on_grid(member: Member, u: datetime, step: int) -> bool:
    """Whether `u` is a whole number of `step` minutes after the start of the member's working window
    holding it (the working day of u's local date)."""
    day = u.astimezone(member.zone).date()
    if day.isoweekday() not in member.hours.weekdays:
        return False
    name = member.zone.key
    start, end = ref_window_edge(day, member.hours.start, name), ref_window_edge(day, member.hours.end, name)
    return start <= u < end and int((u - start) / MINUTE) % step == 0


def reference(members: list[Member], query: SlotQuery) -> list[tuple[datetime, datetime, tuple[str, ...]]]:
    minutes = int((query.end - query.start) / MINUTE)
    prefix = []
    for member in members:
        ok = [ref_minute_ok(member, query.start + i * MINUTE, query) for i in range(minutes)]
        prefix.append([0, *accumulate(ok)])
    dur = int(query.duration / MINUTE)
    step = int(query.interval / MINUTE)
    found = []
    for i in range(minutes - dur + 1):
        start = query.start + i * MINUTE
        if not any(ref_on_grid(m, start, step) for m in members):
            continue
        free = tuple(m.user_id for m, p in zip(members, prefix, strict=True) if p[i + dur] - p[i] == dur)
        if len(free) >= query.required:
            found.append((start, start + query.duration, free))
    return found


# ---- generated inputs ----------------------------------------------------------------------------

five = st.integers(min_value=0, max_value=287).map(lambda n: n * 5)  # minutes of a day, 5-minute steps


@st.composite
def hours(draw) -> WorkingHours:
    """Any working hours, half the time every day (so that slots exist often enough to be checked)."""
    weekdays = draw(st.one_of(st.just(frozenset(range(1, 8))), st.frozensets(st.integers(1, 7), min_size=1)))
    start = draw(st.integers(0, 270))
    end = draw(st.one_of(st.integers(start + 1, 287), st.integers(min(start + 96, 287), 287)))
    return WorkingHours(weekdays, time(start * 5 // 60, start * 5 % 60), time(end * 5 // 60, end * 5 % 60))


@st.composite
def crew_and_query(draw):
    base = datetime.combine(draw(st.sampled_from(BASES)), time(0), UTC)
    start = base + timedelta(days=draw(st.integers(0, 3)), minutes=draw(five))
    end = start + timedelta(minutes=draw(st.integers(12, 72 * 12)) * 5)

    def interval(min_len=5, max_len=600):
        s = start + timedelta(minutes=draw(st.integers(-24 * 12, 96 * 12)) * 5)
        return s, s + timedelta(minutes=draw(st.integers(min_len // 5, max_len // 5)) * 5)

    members = []
    for n in range(draw(st.integers(1, 4))):
        busy = [interval() for _ in range(draw(st.integers(0, 6)))]
        assignments = [Assignment(draw(st.sampled_from(["ms_1", "ms_2", "ms_3"])), *interval(30, 1440))
                       for _ in range(draw(st.integers(0, 3)))]
        members.append(Member(f"u_{n}", ZoneInfo(draw(st.sampled_from(ZONES))), draw(hours()), busy, assignments))
    query = SlotQuery(
        start=start, end=end,
        duration=timedelta(minutes=draw(st.integers(1, 48)) * 5),
        required=draw(st.integers(1, len(members))),
        buffer=timedelta(minutes=draw(st.integers(0, 12)) * 5),
        interval=timedelta(minutes=draw(st.sampled_from([5, 10, 15, 30, 60, 120]))),
        max_results=draw(st.integers(1, 25)),
        ignore_milestone_id=draw(st.sampled_from([None, "ms_1"])),
    )
    return members, query


# ---- properties ----------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crew_and_query())
def test_slots_equal_the_brute_force_reference(case):
    """Every returned slot is free for at least the required members (and lists exactly the free ones),
    no earlier valid slot is missed, buffers hold, results are in order and capped."""
    members, query = case
    got = [(s.start, s.end, s.user_ids) for s in find_slots(members, query)]
    event("no slot" if not got else "max_results reached" if len(got) == query.max_results else "some slots")
    assert got == reference(members, query)[:query.max_results]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crew_and_query())
def test_returned_slots_keep_the_buffer_and_the_order(case):
    members, query = case
    slots = find_slots(members, query)
    assert [s.start for s in slots] == sorted({s.start for s in slots})
    assert len(slots) <= query.max_results
    by_id = {m.user_id: m for m in members}
    for slot in slots:
        assert len(slot.user_ids) >= query.required
        assert query.start <= slot.start and slot.end <= query.end and slot.end - slot.start == query.duration
        for user_id in slot.user_ids:
            m = by_id[user_id]
            periods = list(m.busy) + [(a.start, a.end) for a in m.assignments
                                      if a.milestone_id != query.ignore_milestone_id]
            for s, e in periods:
                assert slot.end + query.buffer <= s or e + query.buffer <= slot.start




# ---- the cases the issue names -------------------------------------------------------------------

LA = ZoneInfo("America/Los_Angeles")


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# The days clocks change in 2026 in ZONES, and the hours around the change.
CHANGE_DAYS = [date(2026, 3, 8), date(2026, 11, 1), date(2026, 3, 29), date(2026, 10, 25), date(2026, 4, 5),
               date(2026, 9, 27)]


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(ZONES),
       st.one_of(st.sampled_from(CHANGE_DAYS), st.dates(date(2026, 1, 1), date(2026, 12, 31))),
       st.one_of(st.integers(0, 239), st.integers(0, 1439)).map(lambda m: time(m // 60, m % 60)))
def test_local_instant_is_the_first_minute_the_clock_shows_that_time(zone, day, wall):
    assert local_instant(day, wall, ZoneInfo(zone)) == ref_window_edge(day, wall, zone)


def test_a_repeated_time_counts_from_its_first_occurrence_and_a_skipped_one_from_the_jump():
    assert local_instant(date(2026, 11, 1), time(1, 30), LA) == _utc("2026-11-01T08:30:00")  # 01:30 PDT
    assert local_instant(date(2026, 3, 8), time(2, 30), LA) == _utc("2026-03-08T10:00:00")  # 03:00 PDT
    assert local_instant(date(2026, 3, 8), time(3, 0), LA) == _utc("2026-03-08T10:00:00")


def test_a_working_week_across_the_march_dst_change_in_los_angeles():
    # Mon 2 Mar .. Fri 13 Mar 2026; clocks go forward on Sun 8 Mar (PST -8 -> PDT -7).
    member = Member("u_la", LA, WorkingHours(frozenset({1, 2, 3, 4, 5}), time(8), time(17)))
    query = SlotQuery(_utc("2026-03-02T00:00:00"), _utc("2026-03-14T00:00:00"), timedelta(hours=9), 1,
                      interval=timedelta(minutes=60), max_results=20)
    starts = [s.start for s in find_slots([member], query)]
    # Exactly one 9-hour slot per working day: 08:00 local, 16:00 UTC before the change, 15:00 after.
    assert starts == [_utc(f"2026-03-{d:02d}T16:00:00") for d in (2, 3, 4, 5, 6)] + \
                     [_utc(f"2026-03-{d:02d}T15:00:00") for d in (9, 10, 11, 12, 13)]
    assert all(s.astimezone(LA).hour == 8 for s in starts)


def test_the_first_two_hours_for_a_crew_in_two_zones_around_the_change():
    # Ana in Los Angeles, Ben in Denver: Friday 6 Mar both work 08-17 local; Ana is busy in the morning.
    ana = Member("u_ana", LA, WorkingHours(), busy=[(_utc("2026-03-06T16:00:00"), _utc("2026-03-06T19:00:00"))])
    ben = Member("u_ben", ZoneInfo("America/Denver"), WorkingHours(),
                 assignments=[Assignment("ms_install", _utc("2026-03-06T19:00:00"), _utc("2026-03-06T23:00:00"))])
    query = SlotQuery(_utc("2026-03-06T00:00:00"), _utc("2026-03-11T00:00:00"), timedelta(hours=2), 2,
                      buffer=timedelta(minutes=30), max_results=3)
    slots = find_slots([ana, ben], query)
    # Friday: Ana free from 11:30 PST (19:30Z) but Ben is on the install until 16:00 MST (23:00Z) + 30 min,
    # and his day ends 17:00 MST (00:00Z): no room. Monday 9 Mar (PDT/MDT): 08:00 MDT = 14:00Z, Ana's
    # day starts 08:00 PDT = 15:00Z: the first slot is 15:00Z.
    assert [s.start for s in slots] == [_utc("2026-03-09T15:00:00"), _utc("2026-03-09T15:30:00"),
                                         _utc("2026-03-09T16:00:00")]
    assert find_slots([ana, ben], SlotQuery(query.start, query.end, query.duration, 2,
                                            buffer=query.buffer, ignore_milestone_id="ms_install",
                                            max_results=1))[0].start == _utc("2026-03-06T19:30:00")


def test_any_one_of_two():
    busy = [(_utc("2026-06-15T15:00:00"), _utc("2026-06-15T18:00:00"))]
    a = Member("u_a", LA, WorkingHours(), busy=busy)
    b = Member("u_b", LA, WorkingHours(start=time(10)))
    slots = find_slots([a, b], SlotQuery(_utc("2026-06-15T00:00:00"), _utc("2026-06-16T00:00:00"),
                                         timedelta(hours=1), 1, interval=timedelta(hours=1), max_results=10))
    # 08:00 PDT = 15:00Z: a busy until 18:00Z, b starts 10:00 PDT = 17:00Z.
    assert [(s.start.hour, s.user_ids) for s in slots] == [
        (17, ("u_b",)), (18, ("u_a", "u_b")), (19, ("u_a", "u_b")), (20, ("u_a", "u_b")),
        (21, ("u_a", "u_b")), (22, ("u_a", "u_b")), (23, ("u_a", "u_b"))]


# ---- candidate starts follow the working hours, not a UTC grid -----------------------------------


def _first_local_starts(zone: str, interval: int, n: int = 3, monday: str = "2026-06-15") -> list[str]:
    member = Member("u", ZoneInfo(zone), WorkingHours())
    start = _utc(f"{monday}T00:00:00")
    query = SlotQuery(start - timedelta(days=1), start + timedelta(days=5),
                      timedelta(minutes=30), 1, interval=timedelta(minutes=interval), max_results=n)
    return [s.start.astimezone(member.zone).strftime("%a %H:%M") for s in find_slots([member], query)]


def test_slots_start_when_work_starts_in_zones_with_half_and_quarter_hour_offsets():
    for zone in ("Asia/Kathmandu", "Asia/Kolkata", "America/St_Johns", "America/Los_Angeles"):
        assert _first_local_starts(zone, 30) == ["Mon 08:00", "Mon 08:30", "Mon 09:00"], zone


def test_an_interval_of_45_minutes_starts_at_the_start_of_work():
    # In winter (PST, 16:00Z) a grid of 45 minutes from 00:00 UTC started at 08:30.
    for monday in ("2026-06-15", "2026-12-14"):
        assert _first_local_starts("America/Los_Angeles", 45, monday=monday) == [
            "Mon 08:00", "Mon 08:45", "Mon 09:30"], monday


def test_an_interval_of_a_day_gives_the_start_of_each_working_day():
    assert _first_local_starts("America/Los_Angeles", 1440, n=10) == [
        "Mon 08:00", "Tue 08:00", "Wed 08:00", "Thu 08:00", "Fri 08:00"]
    assert _first_local_starts("Asia/Kathmandu", 1440, n=10) == [
        "Mon 08:00", "Tue 08:00", "Wed 08:00", "Thu 08:00", "Fri 08:00"]


def test_the_grids_of_a_crew_in_two_zones_are_joined_in_time_order_once_each():
    # Kathmandu +05:45, Kolkata +05:30: any one of them; both grids, in order, no repeats.
    ktm = Member("u_ktm", ZoneInfo("Asia/Kathmandu"), WorkingHours())
    kol = Member("u_kol", ZoneInfo("Asia/Kolkata"), WorkingHours())
    query = SlotQuery(_utc("2026-06-15T00:00:00"), _utc("2026-06-16T00:00:00"), timedelta(minutes=30), 1,
                      interval=timedelta(minutes=30), max_results=4)
    slots = find_slots([ktm, kol], query)
    # 08:00 Kathmandu = 02:15Z; 08:00 Kolkata = 02:30Z; then 02:45Z (Kathmandu), 03:00Z (Kolkata)
    assert [(s.start.strftime("%H:%M"), s.user_ids) for s in slots] == [
        ("02:15", ("u_ktm",)), ("02:30", ("u_ktm", "u_kol")), ("02:45", ("u_ktm", "u_kol")),
        ("03:00", ("u_ktm", "u_kol"))]
