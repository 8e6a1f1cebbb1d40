"""Crew availability, per-user time zones, stale data and sync health through the real handlers (issue 13)."""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import botocore.client
import pytest

from calsync import wiring
from calsync.busy import weeks_between
from calsync.models import iso as iso_z
from calsync.models import utcnow
from localdev import browser
from tests.helpers import iso, milestone, push

LA, DENVER = ZoneInfo("America/Los_Angeles"), ZoneInfo("America/Denver")
ORG = "org_sunbright"


def next_monday(min_days: int = 7) -> date:
    day = datetime.now(UTC).date() + timedelta(days=min_days)
    return day + timedelta(days=(7 - day.weekday()) % 7)


def at(day: date, hour: int, zone: ZoneInfo, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), zone).astimezone(UTC)


@contextlib.contextmanager
def dynamodb_requests():
    counts: Counter = Counter()
    original = botocore.client.BaseClient._make_api_call

    def counting(client, operation, kwargs):
        if client.meta.service_model.service_name == "dynamodb":
            counts[operation] += 1
        return original(client, operation, kwargs)

    botocore.client.BaseClient._make_api_call = counting
    try:
        yield counts
    finally:
        botocore.client.BaseClient._make_api_call = original


def join(stack, user_id, provider, email, zone, roles=None):
    """A member with one writable calendar in `zone`, connected through the consent page."""
    account = stack.emulator.add_calendar_account(provider, email, zoneinfo=zone)
    session = stack.browser(user_id, ORG, roles)
    assert browser.connect(session, stack.base_url, provider, account["profile_id"])["calendar_sync"] == "connected"
    stack.drain()
    return {"account": account, "session": session, "calendar": account["calendars"][0]["calendar_id"]}


@pytest.fixture
def crew(stack):
    """Ana (Los Angeles), Ben (Denver), Cy (Los Angeles), connected; Dee never connected."""
    return {"ana": join(stack, "u_ana", "google", "ana@sunbright.example", "America/Los_Angeles"),
            "ben": join(stack, "u_ben", "microsoft", "ben@sunbright.example", "America/Denver"),
            "cy": join(stack, "u_cy", "apple", "cy@icloud.example", "America/Los_Angeles")}


def ask(stack, session, org=ORG, **body):
    return session.post(stack.url(f"/v1/orgs/{org}/availability"), json=body)


def test_the_time_zone_is_stored_at_connect_without_an_extra_request(stack, crew):
    zones = {u: wiring.store().get_connection(u).timezone for u in ("u_ana", "u_ben", "u_cy")}
    assert zones == {"u_ana": "America/Los_Angeles", "u_ben": "America/Denver", "u_cy": "America/Los_Angeles"}
    # userinfo replaced the calendar list at connect: one request for both
    assert stack.emulator.count_requests(path_prefix="/v1/userinfo") == 3
    assert stack.emulator.count_requests(method="GET", path_prefix="/v1/calendars") == 0


def test_the_first_two_hours_when_the_whole_crew_is_free(stack, crew):
    monday = next_monday()
    # Ana has a dentist appointment 09:00-10:30 her time; Ben is on another install 08:00-12:00 his time.
    stack.emulator.add_external_event(crew["ana"]["calendar"], "Dentist", iso(at(monday, 9, LA)),
                                      iso(at(monday, 10, LA, 30)))
    assert push(stack, milestone("ms_other_install", 1, ["u_ben"], at(monday, 8, DENVER), hours=4)) == set()
    stack.drain()
    stack.emulator.clear_request_log()
    body = {"user_ids": ["u_ana", "u_ben", "u_cy", "u_dee"], "required": "all", "duration_minutes": 120,
            "from": iso(at(monday, 0, LA)), "to": iso(at(monday + timedelta(days=5), 0, LA)),
            "timezone": "America/Los_Angeles", "max_results": 3}
    with dynamodb_requests() as counts:
        resp = ask(stack, crew["ana"]["session"], **body)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    # Working 08-17 local each: together 08:00-16:00 Pacific. Ana is free from 10:30, Ben from 11:00
    # Pacific (12:00 Mountain): the first two hours for all four start at 11:00 Pacific.
    first = at(monday, 11, LA)
    assert [s["start"] for s in answer["slots"]] == [iso(first + timedelta(minutes=30 * k)) for k in range(3)]
    assert all(s["user_ids"] == ["u_ana", "u_ben", "u_cy", "u_dee"] for s in answer["slots"])
    assert answer["slots"][0]["end"] == iso(first + timedelta(hours=2))
    members = answer["members"]
    assert members["u_ben"]["timezone"] == "America/Denver" and members["u_ben"]["stale"] is False
    assert members["u_ana"]["as_of"] is not None and members["u_ana"]["connected"] is True
    assert members["u_dee"] == {"connected": False, "state": "not_connected", "timezone": "America/Los_Angeles",
                                "as_of": None, "stale": True}
    assert stack.emulator.request_log == []  # no Cronofy request
    # 1 BatchGetItem of connections + 1 of busy weeks (4 users x 2-3 weeks) + 1 of the members' longest
    # assignments + 1 query per member + 1 BatchGetItem of mirrors
    assert counts == Counter({"BatchGetItem": 4, "Query": 4})

    # A 30-minute buffer around busy times: Ben's install ends 11:00 Pacific -> 11:30
    buffered = ask(stack, crew["ana"]["session"], **dict(body, buffer_minutes=30, max_results=1)).json()
    assert buffered["slots"][0]["start"] == iso(first + timedelta(minutes=30))
    # Rescheduling that very install: it no longer blocks Ben; Ana's dentist is the limit (10:30)
    ignoring = ask(stack, crew["ana"]["session"], **dict(body, ignore_milestone_id="ms_other_install",
                                                          max_results=1)).json()
    assert ignoring["slots"][0]["start"] == iso(at(monday, 10, LA, 30))
    # Any one of two: Ben is busy, Cy is free at 08:00 Pacific
    anyone = ask(stack, crew["ana"]["session"], **dict(body, user_ids=["u_ben", "u_cy"], required=1,
                                                        max_results=1)).json()
    assert anyone["slots"][0] == {"start": iso(at(monday, 8, LA)), "end": iso(at(monday, 10, LA)),
                                  "user_ids": ["u_cy"]}
    assert stack.emulator.request_log == []


def test_an_all_day_busy_day_west_of_utc_is_the_users_local_day(stack, crew):
    monday = next_monday()
    tuesday = monday + timedelta(days=1)
    stack.emulator.add_external_event(crew["ana"]["calendar"], "Training day", tuesday.isoformat(),
                                      (tuesday + timedelta(days=1)).isoformat())
    stack.drain()
    params = {"user_ids": "u_ana", "from": iso(at(monday, 0, LA)), "to": iso(at(monday + timedelta(days=3), 0, LA))}
    busy = crew["cy"]["session"].get(stack.url(f"/v1/orgs/{ORG}/busy"), params=params).json()
    # Pacific midnight to midnight (08:00Z or 07:00Z), not 00:00Z
    assert busy["users"]["u_ana"] == [{"start": iso(at(tuesday, 0, LA)), "end": iso(at(tuesday + timedelta(days=1),
                                                                                         0, LA))}]
    slots = ask(stack, crew["cy"]["session"], user_ids=["u_ana"], duration_minutes=60, slot_interval_minutes=60,
                max_results=30, **{"from": params["from"], "to": params["to"]}).json()["slots"]
    days = sorted({datetime.fromisoformat(s["start"]).astimezone(LA).date() for s in slots})
    assert days == [monday, tuesday + timedelta(days=1)]
    assert len(slots) == 2 * 9  # starts 08:00 .. 16:00 on Monday and Wednesday


def test_stale_data_is_flagged_on_busy_and_availability(stack, crew):
    params = {"user_ids": "u_ana,u_ben,u_cy", "from": iso(utcnow()), "to": iso(utcnow() + timedelta(days=7))}
    fresh = crew["ana"]["session"].get(stack.url(f"/v1/orgs/{ORG}/busy"), params=params).json()["members"]
    assert [fresh[u]["stale"] for u in ("u_ana", "u_ben", "u_cy")] == [False, False, False]
    # Ben's authorization is revoked (seen at the next write); Cy's busy data was last known current
    # 9 days ago (no notification, no rebuild since: past the default of 8 days)
    stack.emulator.revoke_account(wiring.store().get_connection("u_ben").cronofy_sub)
    assert push(stack, milestone("ms_x", 1, ["u_ben"])) == set()
    nine_days_ago = utcnow() - timedelta(days=9)
    wiring.busy().store.touch("u_cy", ORG, iso_z(nine_days_ago))
    wiring.store().update_connection("u_cy", lambda c: c.model_copy(update={"changes_read_at": None}))
    members = crew["ana"]["session"].get(stack.url(f"/v1/orgs/{ORG}/busy"), params=params).json()["members"]
    assert members["u_ana"]["stale"] is False
    assert members["u_ben"]["stale"] is True and members["u_ben"]["state"] == "needs_reauth"
    assert members["u_cy"] == {"connected": True, "state": "connected", "timezone": "America/Los_Angeles",
                               "as_of": iso_z(nine_days_ago), "stale": True}
    body = {"user_ids": ["u_ana", "u_ben", "u_cy"], "duration_minutes": 60, "from": params["from"],
            "to": params["to"]}
    assert ask(stack, crew["ana"]["session"], **body).json()["members"] == members


def test_the_time_zone_is_kept_current_by_the_reconciler(stack, crew):
    store = wiring.store()
    stack.emulator.set_zoneinfo(crew["cy"]["account"]["profile_id"], "America/New_York")
    stack.emulator.clear_request_log()
    # Checked at connect, less than a week ago: the visit asks nothing about it
    wiring.reconciler().visit("u_cy")
    assert store.get_connection("u_cy").timezone == "America/Los_Angeles"
    assert stack.emulator.count_requests(path_prefix="/v1/userinfo") == 0
    store.update_connection("u_cy", lambda c: c.model_copy(update={
        "timezone_checked_at": utcnow() - timedelta(days=8)}))
    wiring.reconciler().visit("u_cy")
    assert store.get_connection("u_cy").timezone == "America/New_York"
    assert stack.emulator.count_requests(path_prefix="/v1/userinfo") == 1
    # and the scheduler sees Cy's working hours in New York from now on
    params = {"user_ids": "u_cy", "from": iso(utcnow()), "to": iso(utcnow() + timedelta(days=1))}
    members = crew["ana"]["session"].get(stack.url(f"/v1/orgs/{ORG}/busy"), params=params).json()["members"]
    assert members["u_cy"]["timezone"] == "America/New_York"


def test_bad_requests_get_a_clear_422_and_other_orgs_403(stack, crew):
    session = crew["ana"]["session"]
    good = {"user_ids": ["u_ana", "u_ben"], "duration_minutes": 120, "from": "2026-12-07T00:00:00Z",
            "to": "2026-12-12T00:00:00Z"}
    assert ask(stack, session, **good).status_code == 200
    cases = {
        "duration_minutes": dict(good, duration_minutes=0),
        "to must be after from": dict(good, to="2026-12-06T00:00:00Z"),
        "user_ids": dict(good, user_ids=[f"u_{i}" for i in range(500)]),
        "unknown IANA time zone": dict(good, timezone="Mars/Olympus_Mons"),
        "required is more": dict(good, required=3),
        "62 days": dict(good, to="2027-03-01T00:00:00Z"),
        "working hours must end after": dict(good, working_hours={"start": "17:00", "end": "08:00"}),
        "unique": dict(good, user_ids=["u_ana", "u_ana"]),
        "from": {k: v for k, v in good.items() if k != "from"},
    }
    for expected, body in cases.items():
        resp = ask(stack, session, **body)
        assert resp.status_code == 422, (expected, resp.text)
        error = resp.json()["error"]
        assert error["code"] == "invalid_request" and expected in error["message"], (expected, error)
    assert ask(stack, stack.browser("u_eve", "org_other"), **good).status_code == 403


def test_sync_health_for_admins(stack, crew):
    assert push(stack, *[milestone(f"ms_{i}", 1, ["u_ana"], datetime.now(UTC) + timedelta(days=2 + i))
                         for i in range(3)]) == set()
    stack.emulator.revoke_account(wiring.store().get_connection("u_ben").cronofy_sub)
    revoked_at = utcnow()
    assert push(stack, milestone("ms_ben", 1, ["u_ben"])) == set()
    stack.emulator.clear_request_log()
    admin = stack.browser("u_sofia", ORG, roles=["admin", "member"])
    with dynamodb_requests() as counts:
        resp = admin.get(stack.url(f"/v1/orgs/{ORG}/calendar-health"))
    assert resp.status_code == 200, resp.text
    health = resp.json()
    rows = {m["user_id"]: m for m in health["members"]}
    assert sorted(rows) == ["u_ana", "u_ben", "u_cy"]
    ben, ana = rows["u_ben"], rows["u_ana"]
    assert ben["state"] == "needs_reauth" and ben["stale"] is True
    assert ben["last_error"]["reason"] == "authorization_revoked"
    assert abs(datetime.fromisoformat(ben["last_error"]["at"]) - revoked_at) < timedelta(seconds=30)
    assert ana["stale"] is False and ana["last_error"] is None and ana["managed_events"] == 3
    assert ana["provider"] == "google" and ana["calendar_name"] == "ana@sunbright.example"
    assert ana["backfill"]["status"] == "succeeded" and ana["last_sync_at"] is not None
    assert ana["timezone"] == "America/Los_Angeles"
    assert health["summary"] == {"members": 3, "stale": 1, "needs_reauth": 1, "with_errors": 1, "conflicts": 0}
    assert all(m["conflicts"] == [] for m in health["members"])
    assert stack.emulator.request_log == []
    # 1 query of the org index, 1 BatchGetItem each of busy blocks and backfills, 1 COUNT query per member,
    # 1 query of the org's open conflicts
    assert counts == Counter({"Query": 1 + 3 + 1, "BatchGetItem": 2})
    assert crew["ana"]["session"].get(stack.url(f"/v1/orgs/{ORG}/calendar-health")).status_code == 403
    outsider = stack.browser("u_eve", "org_other", roles=["admin"])
    assert outsider.get(stack.url(f"/v1/orgs/{ORG}/calendar-health")).status_code == 403


def test_dynamodb_requests_stay_bounded_for_a_big_crew(stack, crew):
    """50 members (the maximum) over 14 days, 120 assignments in the window: 1 BatchGetItem of connections
    + ceil(50 x (weeks + 1) / 100) of busy weeks + 1 of longest assignments + 50 queries + ceil(120 / 100)
    of mirrors."""
    monday = next_monday()
    users = [f"u_{i}" for i in range(47)] + ["u_ana", "u_ben", "u_cy"]
    msgs = [milestone(f"ms_big_{i}", 1, [users[i % 50], users[(i + 1) % 50]], at(monday, 8 + i % 8, LA))
            for i in range(120)]
    for i in range(0, len(msgs), 10):
        assert push(stack, *msgs[i:i + 10]) == set()
    body = {"user_ids": users, "duration_minutes": 60, "required": 10, "from": iso(at(monday, 0, LA)),
            "to": iso(at(monday + timedelta(days=14), 0, LA))}
    with dynamodb_requests() as counts:
        resp = ask(stack, crew["ana"]["session"], **body)
    assert resp.status_code == 200, resp.text
    start = datetime.fromisoformat(body["from"])
    weeks = len(weeks_between(start - timedelta(days=1), start + timedelta(days=15)))
    assert counts == Counter({"BatchGetItem": 1 + math.ceil(50 * (weeks + 1) / 100) + 1 + math.ceil(120 / 100),
                              "Query": 50})


def test_no_slot_starts_before_now(stack, crew):
    """A `from` in the past searches from now: a slot that has begun cannot be booked, and past busy
    time is not kept (it would look free)."""
    every_day = {"weekdays": [1, 2, 3, 4, 5, 6, 7], "start": "00:00", "end": "23:59"}
    asked_at = utcnow()
    resp = ask(stack, crew["ana"]["session"], user_ids=["u_ana"], duration_minutes=30, working_hours=every_day,
               slot_interval_minutes=5, max_results=5,
               **{"from": iso(asked_at - timedelta(hours=12)), "to": iso(asked_at + timedelta(days=1))})
    assert resp.status_code == 200, resp.text
    starts = [datetime.fromisoformat(s["start"]) for s in resp.json()["slots"]]
    assert len(starts) == 5 and all(s >= asked_at - timedelta(seconds=1) for s in starts), starts
    # and a range wholly in the past has no slot at all
    past = ask(stack, crew["ana"]["session"], user_ids=["u_ana"], duration_minutes=30, working_hours=every_day,
               **{"from": iso(asked_at - timedelta(days=2)), "to": iso(asked_at - timedelta(days=1))})
    assert past.status_code == 200 and past.json()["slots"] == []


def test_another_orgs_routes_answer_403_whatever_the_body_or_query(stack, crew):
    """Org routes answer 403 for another org: before the body (or query) is validated, so an outsider never
    gets the route's validation details; the caller's own org still gets its 422."""
    outsider, own = stack.browser("u_eve", "org_other"), crew["ana"]["session"]
    invalid = {"user_ids": [], "duration_minutes": "x", "from": 5}
    resp = ask(stack, outsider, **invalid)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden", resp.text
    assert ask(stack, own, **invalid).status_code == 422
    busy = outsider.get(stack.url(f"/v1/orgs/{ORG}/busy"), params={"user_ids": "u_ana"})  # no from/to
    assert busy.status_code == 403, busy.text
    assert own.get(stack.url(f"/v1/orgs/{ORG}/busy"), params={"user_ids": "u_ana"}).status_code == 422


def test_a_body_that_is_not_json_is_a_400_on_every_json_route(stack, crew):
    session = crew["ana"]["session"]
    headers = {"Content-Type": "application/json"}
    for method, path in [("post", f"/v1/orgs/{ORG}/availability"), ("post", "/v1/calendar/connect"),
                         ("put", "/v1/calendar/connection")]:
        resp = session.request(method, stack.url(path), data='{"user_ids": ["u_ana"],', headers=headers)
        assert resp.status_code == 400, (path, resp.text)
        assert resp.json()["error"] == {"code": "malformed_json", "message": "the request body is not valid JSON"}


def test_a_range_past_the_stored_busy_days_is_stale(stack, crew):
    """Busy blocks are kept 60 days ahead of the last rebuild: a member asked about later days has unknown
    busy time there, not free time, and says so (without any Cronofy request)."""
    now = utcnow()
    near = {"from": iso(now), "to": iso(now + timedelta(days=30))}
    far = {"from": iso(now + timedelta(days=20)), "to": iso(now + timedelta(days=80))}
    stack.emulator.clear_request_log()
    for window, stale in ((near, False), (far, True)):
        members = ask(stack, crew["ana"]["session"], user_ids=["u_ana", "u_ben"], duration_minutes=60,
                      **window).json()["members"]
        assert [members[u]["stale"] for u in ("u_ana", "u_ben")] == [stale, stale], (window, members)
        busy = crew["ana"]["session"].get(stack.url(f"/v1/orgs/{ORG}/busy"),
                                          params=dict(window, user_ids="u_ana,u_ben")).json()["members"]
        assert busy == members
    assert stack.emulator.request_log == []
    # the horizon follows the last rebuild: one 10 days ago covers 10 days less
    wiring.store().update_connection("u_ana", lambda c: c.model_copy(update={
        "busy_rebuilt_at": now - timedelta(days=10)}))
    late = {"from": iso(now), "to": iso(now + timedelta(days=55))}
    members = ask(stack, crew["ana"]["session"], user_ids=["u_ana", "u_ben"], duration_minutes=60,
                  **late).json()["members"]
    assert members["u_ana"]["stale"] is True and members["u_ben"]["stale"] is False


def test_an_assignment_that_began_long_before_from_and_still_runs_is_busy(stack, crew):
    """A 10-day install that began 9 days before `from` (and a 12-day all-day one) keeps its crew busy:
    the index is by start, and each member's lookback is their longest assignment."""
    monday = next_monday(min_days=14)
    install = milestone("ms_long_install", 1, ["u_ben"], at(monday - timedelta(days=9), 8, DENVER), hours=240)
    all_day = milestone("ms_long_all_day", 1, ["u_cy"], (monday - timedelta(days=10)).isoformat(), all_day=True,
                        end=(monday + timedelta(days=2)).isoformat())
    assert push(stack, install, all_day) == set()
    stack.drain()
    body = {"duration_minutes": 60, "from": iso(at(monday, 0, LA)), "to": iso(at(monday, 23, LA))}
    for user_id in ("u_ben", "u_cy"):
        resp = ask(stack, crew["ana"]["session"], user_ids=[user_id], **body)
        assert resp.status_code == 200 and resp.json()["slots"] == [], (user_id, resp.text)
    # Ben is free from the install's end, 240 hours after it began: 08:00 Denver on the Tuesday
    later = ask(stack, crew["ana"]["session"], user_ids=["u_ben"], max_results=1, duration_minutes=60,
                **{"from": iso(at(monday, 0, LA)), "to": iso(at(monday + timedelta(days=3), 0, LA))}).json()
    assert later["slots"][0]["start"] == iso(at(monday - timedelta(days=9), 8, DENVER) + timedelta(hours=240))


def test_types_are_strict_and_null_optional_fields_take_their_defaults(stack, crew):
    """true is not 1, "2" is not 2, "60" is not 60 and an epoch number is not a time: 422. A JSON null for
    an optional field means its default, as for ignore_milestone_id."""
    session = crew["ana"]["session"]
    monday = next_monday()
    good = {"user_ids": ["u_ana", "u_ben"], "duration_minutes": 60, "from": iso(at(monday, 0, LA)),
            "to": iso(at(monday + timedelta(days=2), 0, LA))}
    lax = {"required": dict(good, required=True), "required ": dict(good, required="2"),
           "duration_minutes": dict(good, duration_minutes="60"),
           "from": dict(good, **{"from": int(at(monday, 0, LA).timestamp())}),
           "to": dict(good, to=str(int(at(monday + timedelta(days=2), 0, LA).timestamp()))),
           "max_results": dict(good, max_results=2.0), "weekdays": dict(good, working_hours={"weekdays": [True]})}
    for field, body in lax.items():
        resp = ask(stack, session, **body)
        assert resp.status_code == 422, (field, resp.text)
        assert field.strip() in resp.json()["error"]["message"], (field, resp.text)
    defaults = ask(stack, session, **good).json()
    nulls = ask(stack, session, **dict(good, working_hours=None, buffer_minutes=None, slot_interval_minutes=None,
                                       max_results=None, timezone=None, ignore_milestone_id=None))
    assert nulls.status_code == 200, nulls.text
    assert nulls.json() == defaults and len(defaults["slots"]) == 10
