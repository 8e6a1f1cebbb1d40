"""Read Events and free/busy: required tzid, filters, windows, paging."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests

from localdev.emulator.timefmt import fmt_date, fmt_time

from .conftest import CRONOFY_FIXTURES, connect, timed_event


def _soon(emu, days: int = 2, hour: int = 15, hours: int = 1) -> tuple[str, str]:
    start = (emu.now() + timedelta(days=days)).replace(hour=hour, minute=0, second=0)
    return fmt_time(start), fmt_time(start + timedelta(hours=hours))


def _read_all(conn, path: str = "/v1/events", **params) -> tuple[list[dict], list[dict]]:
    """Follow next_page to the end; returns (items, pages)."""
    params.setdefault("tzid", "Etc/UTC")
    key = "events" if "events" in path else "free_busy"
    resp = conn.get(path, params=params)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    items, pages = list(body[key]), [body["pages"]]
    while "next_page" in body["pages"]:
        resp = conn.session.get(body["pages"]["next_page"], headers=conn.headers, timeout=10)
        assert resp.status_code == 200
        body = resp.json()
        items += body[key]
        pages.append(body["pages"])
    return items, pages


@pytest.fixture
def scene(emu):
    """One external, one managed, one deleted managed and one all-day free event."""
    conn = connect(emu)
    cal = conn.calendar_id
    s1, e1 = _soon(emu, 1)
    s2, e2 = _soon(emu, 2)
    s3, e3 = _soon(emu, 3)
    dentist = emu.add_external_event(cal, "Dentist", s1, e1)
    conn.upsert(timed_event("crm-1", start=s2, end=e2))
    conn.upsert(timed_event("crm-2", start=s3, end=e3))
    conn.delete(f"/v1/calendars/{cal}/events", json={"event_id": "crm-2"})
    vacation_day = (emu.now() + timedelta(days=10)).date()
    vacation = emu.add_external_event(
        cal,
        "Vacation",
        fmt_date(vacation_day),
        fmt_date(vacation_day + timedelta(days=2)),
        transparency="transparent",
    )
    return conn, {"dentist": dentist, "vacation": vacation}


def test_tzid_is_required(scene):
    conn, _ = scene
    for path in ("/v1/events", "/v1/free_busy"):
        resp = conn.get(path)
        assert resp.status_code == 422
        assert resp.json()["errors"]["tzid"][0]["key"] == "errors.required"
        resp = conn.get(path, params={"tzid": "Not/AZone"})
        assert resp.json()["errors"]["tzid"][0]["key"] == "errors.invalid"


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2030-01-01T00:00:00Z"},
        {"to": "yesterday"},
        {"last_modified": "2030-01-01T00:00:00.250Z"},
        {"include_managed": "yes"},
        {"calendar_ids[]": "cal_not_mine"},
        {"calendar_ids": "cal_x"},
        {"from": "2030-02-01", "to": "2030-01-01"},
    ],
)
def test_bad_read_parameters_are_422(scene, params):
    conn, _ = scene
    assert conn.get("/v1/events", params={"tzid": "Etc/UTC", **params}).status_code == 422


def test_default_hides_managed_and_deleted(scene):
    conn, ids = scene
    events, _ = _read_all(conn)
    assert sorted(e["summary"] for e in events) == ["Dentist", "Vacation"]
    assert all("event_id" not in e for e in events)


def test_include_managed_and_include_deleted(scene):
    conn, _ = scene
    managed, _ = _read_all(conn, include_managed="true")
    assert [e.get("event_id") for e in managed] == [None, "crm-1", None]
    with_deleted, _ = _read_all(conn, include_managed="true", include_deleted="true")
    deleted = [e for e in with_deleted if e["deleted"]]
    assert [e["event_id"] for e in deleted] == ["crm-2"]
    assert deleted[0]["status"] == "cancelled"


def test_only_managed(scene):
    conn, _ = scene
    only, _ = _read_all(conn, only_managed="true", include_deleted="true")
    assert sorted(e["event_id"] for e in only) == ["crm-1", "crm-2"]


def test_event_fields_match_the_fixture(scene):
    conn, _ = scene
    events, _ = _read_all(conn, include_managed="true")
    fixture = json.loads((CRONOFY_FIXTURES / "read_events_page1.json").read_text())["events"]
    external_keys = set(fixture[0])
    managed_keys = set(fixture[1])
    ext = next(e for e in events if e["summary"] == "Dentist")
    mine = next(e for e in events if e.get("event_id") == "crm-1")
    assert set(ext) == external_keys - {"location"}
    assert set(mine) == managed_keys - {"location"}
    assert mine["options"] == {"delete": True, "update": True, "change_participation_status": False}
    vacation = next(e for e in events if e["summary"] == "Vacation")
    assert len(vacation["start"]) == 10 and vacation["transparency"] == "transparent"


def test_managed_events_ignore_the_default_window_but_not_an_explicit_one(emu):
    conn = connect(emu)
    conn.upsert(timed_event("far-past", start="2001-01-01T10:00:00Z", end="2001-01-01T11:00:00Z"))
    emu.add_external_event(conn.calendar_id, "Old dentist", "2001-01-01T10:00:00Z", "2001-01-01T11:00:00Z")
    events, _ = _read_all(conn, include_managed="true")
    assert [e.get("event_id") for e in events] == ["far-past"]
    # an explicit window finds the managed event; the external one is outside Cronofy's sync
    # window (42 days back .. 201 ahead), so Cronofy does not know it
    events, _ = _read_all(conn, include_managed="true", **{"from": "2000-12-31", "to": "2001-01-02"})
    assert [e.get("event_id") for e in events] == ["far-past"]
    events, _ = _read_all(conn, include_managed="true", **{"from": "2001-01-02", "to": "2001-01-03"})
    assert events == []
    emu.configure(enforce_windows=False)
    try:
        events, _ = _read_all(conn, include_managed="true", **{"from": "2000-12-31", "to": "2001-01-02"})
        assert len(events) == 2
    finally:
        emu.configure(enforce_windows=True)


def test_to_is_exclusive_and_dates_are_local_to_tzid(emu):
    conn = connect(emu)
    # 05:00Z is still the day before in Denver
    day = (emu.now() + timedelta(days=10)).date()
    emu.add_external_event(conn.calendar_id, "Late", f"{day}T05:00:00Z", f"{day}T05:30:00Z")
    window = {"from": fmt_date(day - timedelta(days=1)), "to": fmt_date(day)}
    in_denver, _ = _read_all(conn, tzid="America/Denver", **window)
    in_utc, _ = _read_all(conn, tzid="Etc/UTC", **window)
    assert len(in_denver) == 1 and in_utc == []


def test_last_modified_selects_changes_made_outside_the_application(emu):
    """Cronofy: last_modified filters on when events were last modified externally; the
    application's own writes are not returned (README, issue 12)."""
    conn = connect(emu)
    s, e = _soon(emu)
    conn.upsert(timed_event("old", start=s, end=e))
    conn.upsert(timed_event("moved", start=s, end=e))
    emu.settle()
    emu.advance_clock(60)
    mark = fmt_time(emu.now())
    conn.upsert(timed_event("new", start=s, end=e))  # our own write after the mark
    s2, e2 = _soon(emu, days=3)
    emu.move_event(conn.calendar_id, event_id="moved", start=s2, end=e2)  # the user's
    own = emu.add_external_event(conn.calendar_id, "Dentist", s2, e2)
    events, _ = _read_all(conn, include_managed="true", last_modified=mark)
    assert sorted(e.get("event_id") or e["event_uid"] for e in events) == sorted(["moved", own])
    emu.configure(last_modified_external_only=False)
    try:
        events, _ = _read_all(conn, include_managed="true", last_modified=mark)
        assert sorted(e.get("event_id") or e["event_uid"] for e in events) == sorted(["moved", "new", own])
    finally:
        emu.configure(last_modified_external_only=True)


def test_include_moved_finds_events_moved_out_of_the_window(emu):
    conn = connect(emu)
    conn.upsert(timed_event("mover", start="2030-03-05T15:00:00Z", end="2030-03-05T16:00:00Z"))
    emu.settle()  # the user can only move it once it is on the calendar
    emu.move_event(
        conn.calendar_id, event_id="mover", start="2030-04-05T15:00:00Z", end="2030-04-05T16:00:00Z"
    )
    window = {"from": "2030-03-01", "to": "2030-03-10", "include_managed": "true"}
    plain, _ = _read_all(conn, **window)
    moved, _ = _read_all(conn, include_moved="true", **window)
    assert plain == []
    assert [(e["event_id"], e["start"]) for e in moved] == [("mover", "2030-04-05T15:00:00Z")]


def test_calendar_ids_filter(emu):
    conn = connect(emu, calendars=[{"name": "A", "primary": True}, {"name": "B"}])
    cal_a, cal_b = (c["calendar_id"] for c in conn.account["calendars"])
    s, e = _soon(emu)
    emu.add_external_event(cal_a, "in A", s, e)
    emu.add_external_event(cal_b, "in B", s, e)
    events, _ = _read_all(conn, **{"calendar_ids[]": [cal_b]})
    assert [ev["summary"] for ev in events] == ["in B"]


def test_localized_times(emu):
    conn = connect(emu)
    conn.upsert(timed_event("loc", start="2030-03-05T15:30:00Z", end="2030-03-05T17:00:00Z"))
    events, _ = _read_all(conn, include_managed="true", localized_times="true")
    assert events[0]["start"] == {"time": "2030-03-05T08:30:00-07:00", "tzid": "America/Denver"}


def test_paging_follows_next_page_with_the_same_bearer(emu):
    conn = connect(emu)  # the module emulator pages at 5
    s, e = _soon(emu)
    for i in range(12):
        emu.add_external_event(conn.calendar_id, f"Event {i:02d}", s, e)
    events, pages = _read_all(conn)
    assert len(events) == 12 and len({e["event_uid"] for e in events}) == 12
    assert [(p["current"], p["total"]) for p in pages] == [(1, 3), (2, 3), (3, 3)]
    assert "next_page" not in pages[-1]
    first = conn.get("/v1/events", params={"tzid": "Etc/UTC"}).json()["pages"]["next_page"]
    assert first.startswith(emu.base_url + "/v1/events/pages/")
    assert requests.get(first, timeout=10).status_code == 401
    stranger = connect(emu)
    assert stranger.session.get(first, headers=stranger.headers, timeout=10).status_code == 404


def test_empty_result_is_one_page(emu):
    conn = connect(emu)
    body = conn.get("/v1/events", params={"tzid": "Etc/UTC"}).json()
    assert body == {"pages": {"current": 1, "total": 1}, "events": []}


# -- free/busy --------------------------------------------------------------------------------


def test_free_busy_excludes_managed_and_maps_statuses(emu):
    conn = connect(emu)
    cal = conn.calendar_id
    s1, e1 = _soon(emu, 1)
    s2, e2 = _soon(emu, 2)
    s3, e3 = _soon(emu, 3)
    s4, e4 = _soon(emu, 4)
    emu.add_external_event(cal, "Dentist", s1, e1)
    emu.add_external_event(cal, "Focus (show as free)", s2, e2, transparency="transparent")
    emu.add_external_event(cal, "Maybe", s3, e3, status="tentative")
    gone = emu.add_external_event(cal, "Cancelled", s4, e4)
    emu.delete_event_as_user(cal, event_uid=gone)
    conn.upsert(timed_event("crm-9", start=s4, end=e4))
    day = (emu.now() + timedelta(days=5)).date()
    emu.add_external_event(
        cal, "Vacation", fmt_date(day), fmt_date(day + timedelta(days=2)), transparency="transparent"
    )

    items, _ = _read_all(conn, "/v1/free_busy")
    assert [(i["start"], i["free_busy_status"]) for i in items] == [
        (s1, "busy"),
        (s2, "free"),
        (s3, "tentative"),
        (fmt_date(day), "free"),
    ]
    assert set(items[0]) == {"calendar_id", "start", "end", "free_busy_status"}
    with_managed, _ = _read_all(conn, "/v1/free_busy", include_managed="true")
    assert (s4, "busy") in [(i["start"], i["free_busy_status"]) for i in with_managed]


def test_free_busy_pages(emu):
    conn = connect(emu)
    s, e = _soon(emu)
    for i in range(7):
        emu.add_external_event(conn.calendar_id, f"Busy {i}", s, e)
    items, pages = _read_all(conn, "/v1/free_busy")
    assert len(items) == 7 and len(pages) == 2
    assert pages[0]["next_page"].startswith(emu.base_url + "/v1/free_busy/pages/")
