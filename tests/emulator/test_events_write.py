"""Upsert / delete / bulk delete / batch: strict validation and Cronofy's status codes."""

from __future__ import annotations

import json

import pytest

from .conftest import CRONOFY_FIXTURES, connect, landed, timed_event


def _errors(resp) -> dict:
    assert resp.status_code == 422, resp.text
    return resp.json()["errors"]


def test_upsert_fixture_body_is_accepted_and_stored(conn, emu):
    body = json.loads((CRONOFY_FIXTURES / "upsert_event_request.json").read_text())
    resp = conn.upsert(body)
    assert resp.status_code == 202 and resp.content == b""
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    (stored,) = landed(emu, conn.calendar_id)
    assert stored["managed"] is True and stored["event_id"] == "crm-appt-10482"
    assert stored["start"] == "2025-03-05T15:30:00Z" and stored["tzid"] == "America/Denver"
    assert stored["location"]["description"] == "12 Oak St, Boulder, CO"
    assert stored["url"] == "https://crm.example/jobs/10482"
    assert stored["event_uid"].startswith("evt_")


def test_upsert_twice_updates_in_place(conn, emu):
    assert conn.upsert(timed_event("job-1")).status_code == 202
    emu.advance_clock(5)
    assert (
        conn.upsert(
            timed_event("job-1", summary="Renamed", start="2030-03-06T15:00:00Z", end="2030-03-06T16:00:00Z")
        ).status_code
        == 202
    )
    (stored,) = landed(emu, conn.calendar_id)
    assert stored["summary"] == "Renamed" and stored["start"] == "2030-03-06T15:00:00Z"
    assert stored["updated"] > stored["created"]


@pytest.mark.parametrize(
    ("start", "end", "ok"),
    [
        ("2030-03-05T15:30:00.123Z", "2030-03-05T17:00:00Z", False),  # non-zero milliseconds
        ("2030-03-05T15:30:00.100Z", "2030-03-05T17:00:00Z", False),
        ("2030-03-05T15:30:00.000Z", "2030-03-05T17:00:00.000Z", True),  # zero fraction accepted
        ("2030-03-05T15:30:00+01:00", "2030-03-05T17:00:00Z", False),  # must be UTC with Z
        ("2030-03-05 15:30:00Z", "2030-03-05T17:00:00Z", False),
        ("2030-02-30T15:30:00Z", "2030-03-05T17:00:00Z", False),
    ],
)
def test_time_format_strictness(conn, start, end, ok):
    resp = conn.upsert(timed_event("ms-check", start=start, end=end))
    if ok:
        assert resp.status_code == 202
    else:
        errors = _errors(resp)
        assert errors["start"][0]["key"] == "errors.invalid"


def test_zero_fraction_is_stored_without_it(conn, emu):
    conn.upsert(timed_event("frac", start="2030-03-05T15:30:00.000Z", end="2030-03-05T17:00:00Z"))
    assert landed(emu, conn.calendar_id)[0]["start"] == "2030-03-05T15:30:00Z"


def test_timed_event_without_tzid_is_rejected(conn, emu):
    event = timed_event("no-tz")
    del event["tzid"]
    errors = _errors(conn.upsert(event))
    assert errors["tzid"][0]["key"] == "errors.required"
    assert landed(emu, conn.calendar_id) == []


def test_tzid_inside_time_objects_is_enough(conn):
    event = {
        "event_id": "obj-tz",
        "summary": "x",
        "start": {"time": "2030-03-11T16:00:00Z", "tzid": "America/Denver"},
        "end": {"time": "2030-03-11T17:00:00Z", "tzid": "America/Chicago"},
    }
    assert conn.upsert(event).status_code == 202


def test_invalid_tzid_is_rejected(conn):
    assert (
        _errors(conn.upsert(timed_event("bad-tz", tzid="Mars/Olympus")))["tzid"][0]["key"] == "errors.invalid"
    )
    event = {
        "event_id": "bad-tz2",
        "summary": "x",
        "start": {"time": "2030-03-11T16:00:00Z", "tzid": "Nowhere"},
        "end": {"time": "2030-03-11T17:00:00Z", "tzid": "Etc/UTC"},
    }
    assert "start" in _errors(conn.upsert(event))


def test_all_day_events_and_kind_mismatch(conn, emu):
    assert (
        conn.upsert(
            {"event_id": "allday", "summary": "Install", "start": "2030-03-10", "end": "2030-03-12"}
        ).status_code
        == 202
    )
    assert landed(emu, conn.calendar_id)[0]["all_day"] is True
    # same day start and end: the end is exclusive, so this is empty
    assert "end" in _errors(
        conn.upsert({"event_id": "empty", "summary": "x", "start": "2030-03-10", "end": "2030-03-10"})
    )
    mixed = {
        "event_id": "mixed",
        "summary": "x",
        "start": "2030-03-10",
        "end": "2030-03-10T17:00:00Z",
        "tzid": "Etc/UTC",
    }
    assert _errors(conn.upsert(mixed))["end"][0]["key"] == "errors.invalid"


def test_end_must_be_after_start(conn):
    errors = _errors(
        conn.upsert(timed_event("backwards", start="2030-03-05T17:00:00Z", end="2030-03-05T15:00:00Z"))
    )
    assert errors["end"][0]["key"] == "errors.invalid"


@pytest.mark.parametrize(
    ("change", "field", "key"),
    [
        ({"event_id": None}, "event_id", "errors.required"),
        ({"event_id": "has space"}, "event_id", "errors.invalid"),
        ({"event_id": "x" * 65}, "event_id", "errors.invalid"),
        ({"summary": None}, "summary", "errors.required"),
        ({"summary": "s" * 1025}, "summary", "errors.invalid"),
        ({"description": "d" * 4097}, "description", "errors.invalid"),
        ({"start": None}, "start", "errors.required"),
        ({"end": None}, "end", "errors.required"),
        ({"transparency": "see-through"}, "transparency", "errors.invalid"),
        ({"location": "12 Oak St"}, "location", "errors.invalid"),
        ({"url": 42}, "url", "errors.invalid"),
        ({"reminders": [{"minutes": -5}]}, "reminders", "errors.invalid"),
    ],
)
def test_field_validation(conn, change, field, key):
    event = timed_event("valid-1")
    for name, value in change.items():
        if value is None:
            event.pop(name)
        else:
            event[name] = value
    errors = _errors(conn.upsert(event))
    assert errors[field][0]["key"] == key
    assert isinstance(errors[field][0]["description"], str)


def test_limits_at_the_edge_are_accepted(conn):
    event = timed_event("a" * 64, summary="s" * 1024, description="d" * 4096)
    event["event_id"] = "A-z_0.9@x" + "a" * 55
    assert conn.upsert(event).status_code == 202


def test_unknown_readonly_and_deleted_calendars(emu):
    conn = connect(
        emu,
        calendars=[
            {"name": "Main", "primary": True},
            {"name": "Holidays", "readonly": True},
            {"name": "Old", "deleted": True},
        ],
    )
    other = connect(emu)
    readonly = conn.account["calendars"][1]["calendar_id"]
    deleted = conn.account["calendars"][2]["calendar_id"]
    assert conn.upsert(timed_event("e1"), calendar_id="cal_does_not_exist").status_code == 404
    assert conn.upsert(timed_event("e1"), calendar_id=other.calendar_id).status_code == 404
    for cal in (readonly, deleted):
        resp = conn.upsert(timed_event("e1"), calendar_id=cal)
        assert resp.status_code == 403
        assert resp.json()["errors"]["calendar_id"][0]["key"] == "errors.forbidden"
        assert conn.delete(f"/v1/calendars/{cal}/events", json={"event_id": "e1"}).status_code == 403


def test_disconnected_profile_answers_423(emu):
    conn = connect(emu)
    emu.disconnect_profile(conn.account["profile_id"])
    assert conn.upsert(timed_event("locked")).status_code == 423
    assert (
        conn.delete(f"/v1/calendars/{conn.calendar_id}/events", json={"event_id": "locked"}).status_code
        == 423
    )
    profiles = conn.get("/v1/profiles").json()["profiles"]
    assert profiles[0]["profile_connected"] is False and "profile_relink_url" in profiles[0]
    emu.reconnect_profile(conn.account["profile_id"])
    assert conn.upsert(timed_event("locked")).status_code == 202
    assert "profile_relink_url" not in conn.get("/v1/profiles").json()["profiles"][0]


def test_upsert_needs_create_event_scope(emu):
    conn = connect(emu, scope="read_account list_calendars read_events")
    assert conn.upsert(timed_event("noscope")).status_code == 403


def test_body_must_be_json(conn):
    resp = conn.post(
        f"/v1/calendars/{conn.calendar_id}/events",
        data="not json",
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 422
    form = conn.post(f"/v1/calendars/{conn.calendar_id}/events", data={"event_id": "x"})
    assert form.status_code == 415


# -- delete -----------------------------------------------------------------------------------


def test_delete_keeps_a_tombstone_and_is_idempotent(conn, emu):
    conn.upsert(timed_event("to-delete"))
    path = f"/v1/calendars/{conn.calendar_id}/events"
    assert conn.delete(path, json={"event_id": "to-delete"}).status_code == 202
    assert conn.delete(path, json={"event_id": "to-delete"}).status_code == 202
    assert conn.delete(path, json={"event_id": "never-existed"}).status_code == 202
    assert landed(emu, conn.calendar_id) == []
    (tomb,) = landed(emu, conn.calendar_id, include_deleted=True)
    assert tomb["deleted"] is True and tomb["status"] == "cancelled"
    assert _errors(conn.delete(path, json={}))["event_id"][0]["key"] == "errors.required"


def test_upsert_recreates_an_event_the_user_deleted(conn, emu):
    conn.upsert(timed_event("phoenix"))
    emu.settle()  # on the calendar before the user can delete it
    emu.delete_event_as_user(conn.calendar_id, event_id="phoenix")
    assert landed(emu, conn.calendar_id) == []
    conn.upsert(timed_event("phoenix"))
    (event,) = landed(emu, conn.calendar_id)
    assert event["deleted"] is False and event["status"] == "confirmed"


def test_external_events_cannot_be_deleted_with_sandbox_permission(conn, emu):
    uid = emu.add_external_event(conn.calendar_id, "Dentist", "2030-03-04T16:00:00Z", "2030-03-04T17:00:00Z")
    resp = conn.delete(f"/v1/calendars/{conn.calendar_id}/events", json={"event_uid": uid})
    assert resp.status_code == 403
    assert landed(emu, conn.calendar_id)[0]["deleted"] is False


# -- bulk delete ------------------------------------------------------------------------------


def test_bulk_delete_all_only_touches_managed_events_of_the_account(emu):
    conn = connect(emu, calendars=[{"name": "A", "primary": True}, {"name": "B"}])
    other = connect(emu)
    cal_a, cal_b = (c["calendar_id"] for c in conn.account["calendars"])
    conn.upsert(timed_event("m1"), calendar_id=cal_a)
    conn.upsert(timed_event("m2"), calendar_id=cal_b)
    other.upsert(timed_event("m1"))
    uid = emu.add_external_event(cal_a, "Dentist", "2030-03-04T16:00:00Z", "2030-03-04T17:00:00Z")
    assert conn.delete("/v1/events", json={"delete_all": True}).status_code == 202
    assert [e["event_uid"] for e in landed(emu, cal_a)] == [uid]
    assert landed(emu, cal_b) == []
    assert len(landed(emu, other.calendar_id)) == 1


def test_bulk_delete_by_calendar_ids(emu):
    conn = connect(emu, calendars=[{"name": "A", "primary": True}, {"name": "B"}])
    cal_a, cal_b = (c["calendar_id"] for c in conn.account["calendars"])
    conn.upsert(timed_event("m1"), calendar_id=cal_a)
    conn.upsert(timed_event("m2"), calendar_id=cal_b)
    assert conn.delete("/v1/events", json={"calendar_ids": [cal_b]}).status_code == 202
    assert len(landed(emu, cal_a)) == 1 and landed(emu, cal_b) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"json": {"delete_all": True, "calendar_ids": ["cal_x"]}},  # both
        {"json": {}},  # neither
        {"json": {"delete_all": False}},
        {"json": {"calendar_ids": []}},
        {"json": {"calendar_ids": ["cal_not_mine"]}},
        {"params": {"calendar_ids[]": "CAL"}},  # pycronofy's query-string form
        {"params": {"delete_all": "true"}},
        {"data": "delete_all=true", "headers": {"Content-Type": "application/json"}},  # not JSON
    ],
)
def test_bulk_delete_rejects_malformed_requests(emu, kwargs):
    conn = connect(emu)
    conn.upsert(timed_event("keep-me"))
    if "params" in kwargs and kwargs["params"].get("calendar_ids[]") == "CAL":
        kwargs = {"params": {"calendar_ids[]": conn.calendar_id}}
    resp = conn.delete("/v1/events", **kwargs)
    assert resp.status_code == 422, resp.text
    assert len(landed(emu, conn.calendar_id)) == 1


# -- batch ------------------------------------------------------------------------------------


def test_batch_fixture_gives_207_in_order(conn, emu):
    raw = (
        (CRONOFY_FIXTURES / "batch_request.json")
        .read_text()
        .replace("cal_ZfQk3xT7aBcD9eFg_a1b2c3d4e5", conn.calendar_id)
    )
    resp = conn.post("/v1/batch", json=json.loads(raw))
    assert resp.status_code == 207
    results = resp.json()["batch"]
    assert [r["status"] for r in results] == [202, 202, 422]
    assert results[2]["data"]["errors"]["summary"][0]["key"] == "errors.required"
    assert [e["event_id"] for e in landed(emu, conn.calendar_id)] == ["crm-appt-10490"]


def test_batch_entries_are_independent(emu):
    conn = connect(emu, calendars=[{"name": "Main", "primary": True}, {"name": "Hol", "readonly": True}])
    url = f"/v1/calendars/{conn.calendar_id}/events"
    readonly_url = f"/v1/calendars/{conn.account['calendars'][1]['calendar_id']}/events"
    batch = [
        {"method": "POST", "relative_url": url, "data": timed_event("b1")},
        {"method": "POST", "relative_url": "/v1/calendars/cal_nope/events", "data": timed_event("b2")},
        {"method": "POST", "relative_url": readonly_url, "data": timed_event("b3")},
        {"method": "POST", "relative_url": url, "data": timed_event("b4", start="2030-03-05T15:30:00.5Z")},
        {"method": "DELETE", "relative_url": url, "data": {"event_id": "b1"}},
        {"method": "PATCH", "relative_url": url, "data": {"event_id": "b1"}},
        {"method": "POST", "relative_url": url, "data": timed_event("b5")},
    ]
    results = conn.post("/v1/batch", json={"batch": batch}).json()["batch"]
    assert [r["status"] for r in results] == [202, 404, 403, 422, 202, 422, 202]
    assert "data" not in results[0]
    assert [e["event_id"] for e in landed(emu, conn.calendar_id)] == ["b5"]


def test_batch_size_limits(conn, emu):
    url = f"/v1/calendars/{conn.calendar_id}/events"
    too_many = [{"method": "POST", "relative_url": url, "data": timed_event(f"n{i}")} for i in range(51)]
    resp = conn.post("/v1/batch", json={"batch": too_many})
    assert resp.status_code == 422 and "batch" in resp.json()["errors"]
    assert landed(emu, conn.calendar_id) == []
    assert conn.post("/v1/batch", json={"batch": []}).status_code == 422
    assert conn.post("/v1/batch", json={}).status_code == 422
    resp = conn.post("/v1/batch", json={"batch": too_many[:50]})
    assert resp.status_code == 207 and len(landed(emu, conn.calendar_id)) == 50
