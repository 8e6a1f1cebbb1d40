"""Cronofy's official Python SDK (pycronofy 2.1.1, a test dependency only) as a second client of the
emulator, for every call the service makes. The emulator runs with its realism on (asynchronous
writes, outside-only last_modified, push retries, window bounds), as in the rest of the suite.

Each form pycronofy sends is decided explicitly (see localdev/emulator/README.md):
accepted where Cronofy accepts it, refused (and listed as the SDK's quirk) where Cronofy's docs
say otherwise. The table is in the README's "pycronofy conformance" section.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse

import pycronofy
import pytest
import requests
from pycronofy.batch import BatchBuilder
from pycronofy.exceptions import PyCronofyPartialSuccessError, PyCronofyRequestError

from localdev.emulator import CronofyEmulator
from tests.emulator.conftest import Receiver

CLIENT_ID = "sdk-client"
CLIENT_SECRET = "sdk-secret-1"
REDIRECT_URI = "http://app.test/v1/calendar/oauth/callback"
UTC = dt.UTC


@pytest.fixture(scope="module")
def emu():
    emulator = CronofyEmulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, page_size=2).start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.close()


def sdk(emu, **kwargs) -> pycronofy.Client:
    client = pycronofy.Client(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, **kwargs)
    client.request_handler.base_url = emu.base_url  # the data center's API host
    client.app_base_url = emu.base_url  # and its app host (consent page)
    return client


_n = iter(range(1, 10_000))


def authorized(emu, calendars=None) -> tuple[pycronofy.Client, dict]:
    """The whole OAuth round trip through pycronofy: its authorization link, the consent page, its
    code exchange."""
    account = emu.add_calendar_account("google", f"sdk{next(_n)}@sunbright-solar.example", calendars=calendars)
    client = sdk(emu)
    link = client.user_auth_link(REDIRECT_URI, state="st-1")
    page = requests.get(link, timeout=10)
    assert page.status_code == 200, page.text  # provider_name="" and avoid_linking=False accepted
    form = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(link).query, keep_blank_values=True))
    form.update(decision="allow", profile_id=account["profile_id"])
    resp = requests.post(f"{emu.base_url}/oauth/authorize", data=form, allow_redirects=False, timeout=10)
    assert resp.status_code == 302, resp.text
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(resp.headers["Location"]).query)["code"][0]
    tokens = client.get_authorization_from_code(code, redirect_uri=REDIRECT_URI)
    assert set(tokens) == {"access_token", "refresh_token", "token_expiration"}  # (sub is dropped: SDK quirk)
    return client, account


def timed(event_id: str, start: dt.datetime, hours: int = 1, **extra) -> dict:
    return {"event_id": event_id, "summary": f"Install {event_id}", "start": start,
            "end": start + dt.timedelta(hours=hours), "tzid": "America/Denver", **extra}


def soon(emu, days: int = 3, hour: int = 15) -> dt.datetime:
    return (emu.now() + dt.timedelta(days=days)).replace(hour=hour, minute=0, second=0, microsecond=0)


# ---- OAuth -------------------------------------------------------------------------------------


def test_code_exchange_userinfo_and_calendars(emu):
    client, account = authorized(emu, calendars=[{"name": "Work", "primary": True}, {"name": "Ro", "readonly": True}])
    info = client.userinfo()
    assert info["sub"].startswith("acc_") and info["cronofy.type"] == "account"
    cals = client.list_calendars()
    assert [(c["calendar_name"], c["calendar_readonly"]) for c in cals] == [("Work", False), ("Ro", True)]
    assert {c["profile_id"] for c in cals} == {account["profile_id"]}


def test_refresh_rotates_the_refresh_token(emu):
    client, _ = authorized(emu)
    old = client.auth.refresh_token
    refreshed = client.refresh_authorization()
    assert refreshed["refresh_token"] != old and client.list_calendars()
    stale = sdk(emu, refresh_token=old)
    with pytest.raises(PyCronofyRequestError) as err:
        stale.refresh_authorization()
    assert err.value.response.status_code == 400 and err.value.response.json()["error"] == "invalid_grant"


def test_revoke_ends_the_authorization(emu):
    client, _ = authorized(emu)
    token = client.auth.access_token
    client.revoke_authorization()
    with pytest.raises(PyCronofyRequestError) as err:
        sdk(emu, access_token=token).list_calendars()
    assert err.value.response.status_code == 401


# ---- events ------------------------------------------------------------------------------------


def test_upsert_timed_and_all_day_then_delete(emu):
    client, account = authorized(emu)
    cal = account["calendars"][0]["calendar_id"]
    start = soon(emu)
    client.upsert_event(cal, timed("sdk-timed", start.astimezone(UTC),
                                   location={"description": "12 Main St"}, description="Panels"))
    day = start.date()
    client.upsert_event(cal, {"event_id": "sdk-allday", "summary": "Permit day", "start": day,
                              "end": day + dt.timedelta(days=1)})
    # accepted (202) is not applied: Cronofy writes asynchronously
    assert [e["event_id"] for e in client.read_events(only_managed=True, tzid="Etc/UTC").all()] == []
    emu.settle()
    events = {e["event_id"]: e for e in client.read_events(only_managed=True, tzid="Etc/UTC").all()}
    assert events["sdk-timed"]["start"] == start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert events["sdk-allday"]["start"] == day.isoformat()
    client.delete_event(cal, "sdk-timed")
    emu.settle()
    left = client.read_events(only_managed=True, include_deleted=True, tzid="Etc/UTC").all()
    assert {e["event_id"]: e["deleted"] for e in left} == {"sdk-timed": True, "sdk-allday": False}


def test_a_timed_upsert_with_milliseconds_is_refused_as_cronofy_does(emu):
    client, account = authorized(emu)
    with pytest.raises(PyCronofyRequestError) as err:
        client.upsert_event(account["calendars"][0]["calendar_id"],
                            {"event_id": "ms", "summary": "x", "start": "2030-01-01T10:00:00.250Z",
                             "end": "2030-01-01T11:00:00Z", "tzid": "Etc/UTC"})
    assert err.value.response.status_code == 422


def test_bulk_delete_as_pycronofy_sends_it_is_refused(emu):
    """pycronofy puts delete_all / calendar_ids[] in the query string (with an empty JSON body);
    Cronofy's docs define a JSON body. SDK quirk: refused, nothing deleted. The service sends the body."""
    client, account = authorized(emu)
    cal = account["calendars"][0]["calendar_id"]
    client.upsert_event(cal, timed("keep", soon(emu)))
    for kwargs in ({}, {"calendar_ids": [cal]}):
        with pytest.raises(PyCronofyRequestError) as err:
            client.delete_all_events(**kwargs)
        assert err.value.response.status_code == 422
        assert "errors" in err.value.response.json()
    emu.settle()
    assert [e["event_id"] for e in emu.events(cal)] == ["keep"]
    # the documented form, as the service sends it, is accepted
    resp = requests.delete(f"{emu.base_url}/v1/events", json={"delete_all": True}, timeout=10,
                           headers={"Authorization": f"Bearer {client.auth.access_token}"})
    assert resp.status_code == 202
    emu.settle()
    assert emu.events(cal) == []


def test_read_events_with_every_parameter_the_service_uses_and_paging(emu):
    client, account = authorized(emu)
    cal = account["calendars"][0]["calendar_id"]
    start = soon(emu)
    for i in range(5):
        client.upsert_event(cal, timed(f"p{i}", start + dt.timedelta(hours=2 * i)))
    emu.settle()
    emu.advance_clock(5)
    mark = emu.now()
    moved_to = start + dt.timedelta(days=1)
    emu.move_event(cal, event_id="p1", start=moved_to, end=moved_to + dt.timedelta(hours=1))
    emu.delete_event_as_user(cal, event_id="p2")
    later = start + dt.timedelta(days=2)
    dentist = emu.add_external_event(cal, "Dentist", later, later + dt.timedelta(hours=1))
    client.upsert_event(cal, timed("p0", start + dt.timedelta(minutes=30)))  # our own change after the mark
    emu.settle()
    # pycronofy sends every boolean as True/False: accepted with their meaning
    pages = client.read_events(calendar_ids=[cal], last_modified=mark, include_managed=True, include_deleted=True,
                               include_moved=True, tzid="Etc/UTC")
    changed = {e.get("event_id") or e["event_uid"]: e["deleted"] for e in pages.all()}
    assert changed == {"p1": False, "p2": True, dentist: False}  # outside changes only, not our writes
    everything = client.read_events(include_managed=True, tzid="Etc/UTC")
    assert everything.total == 3  # 5 events (2 per page): page_size 2; p2 deleted, dentist external
    assert sorted(e.get("event_id") or "ext" for e in everything) == ["ext", "p0", "p1", "p3", "p4"]
    external_only = client.read_events(include_managed=False, tzid="Etc/UTC").all()
    assert [e["event_uid"] for e in external_only] == [dentist]
    only_managed = client.read_events(only_managed=True, include_managed=False, tzid="Etc/UTC").all()
    assert sorted(e["event_id"] for e in only_managed) == ["p0", "p1", "p3", "p4"]


def test_free_busy_and_its_documented_bounds(emu):
    client, account = authorized(emu)
    cal = account["calendars"][0]["calendar_id"]
    start = soon(emu, days=2, hour=9)
    emu.add_external_event(cal, "Dentist", start, start + dt.timedelta(hours=1))
    emu.add_external_event(cal, "Focus", start + dt.timedelta(hours=2), start + dt.timedelta(hours=3),
                           transparency="transparent")
    client.upsert_event(cal, timed("ours", start + dt.timedelta(hours=4)))
    emu.settle()
    today = emu.now().date()
    blocks = client.read_free_busy(from_date=today - dt.timedelta(days=1), to_date=today + dt.timedelta(days=60),
                                   include_managed=False, tzid="Etc/UTC").all()
    assert [b["free_busy_status"] for b in blocks] == ["busy", "free"]
    for kwargs in ({"from_date": today - dt.timedelta(days=43)}, {"to_date": today + dt.timedelta(days=203)}):
        with pytest.raises(PyCronofyRequestError) as err:
            client.read_free_busy(tzid="Etc/UTC", **kwargs)
        assert err.value.response.status_code == 422
        (field,) = err.value.response.json()["errors"]
        assert err.value.response.json()["errors"][field][0]["key"] == "errors.invalid"


def test_batch_upserts_and_deletes_with_per_entry_results(emu):
    client, account = authorized(emu)
    cal = account["calendars"][0]["calendar_id"]
    start = soon(emu)
    builder = BatchBuilder()
    builder.upsert_event(cal, timed("b1", start))
    builder.upsert_event(cal, timed("b2", start + dt.timedelta(hours=2)))
    result = client.batch(builder)
    assert [e.status() for e in result.entries] == [202, 202]
    emu.settle()
    bad = BatchBuilder().delete_event(cal, "b1").upsert_event(cal, {"event_id": "b3", "summary": "",
                                                                     "start": start, "end": start})
    with pytest.raises(PyCronofyPartialSuccessError) as err:
        client.batch(bad)
    assert [e.status() for e in err.value.batch_response.entries] == [202, 422]
    emu.settle()
    assert sorted(e["event_id"] for e in emu.events(cal)) == ["b2"]


# ---- channels and pushes -----------------------------------------------------------------------


def test_channels_and_a_push_signed_during_a_rotation(receiver):
    emu = CronofyEmulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET).start()  # its secret rotates
    client, account = authorized(emu)
    cal = account["calendars"][0]["calendar_id"]
    emu.configure(push_duplicate_rate=0.0, push_reorder_rate=0.0)
    try:
        channel = client.create_notification_channel(receiver.url("/sdk"), calendar_ids=[cal], only_managed=False)
        assert channel["filters"] == {"calendar_ids": [cal]}
        assert [c["channel_id"] for c in client.list_notification_channels()] == [channel["channel_id"]]
        emu.begin_secret_rotation("sdk-secret-2")
        emu.add_external_event(cal, "Dentist", soon(emu), soon(emu) + dt.timedelta(hours=1))
        assert emu.wait_for_notifications(5)
        (push,) = receiver.of_type("change", "/sdk")
        header, body = push["headers"]["Cronofy-HMAC-SHA256"], push["raw"].decode()
        assert len(header.split(",")) == 2
        assert sdk(emu).hmac_valid(header, body)  # the old secret still verifies ...
        new_client = pycronofy.Client(client_id=CLIENT_ID, client_secret="sdk-secret-2")
        assert new_client.hmac_valid(header, body)  # ... and so does the new one
        assert not pycronofy.Client(client_id=CLIENT_ID, client_secret="other").hmac_valid(header, body)
        assert json.loads(body)["notification"]["type"] == "change"
        client.close_notification_channel(channel["channel_id"])
        assert client.list_notification_channels() == []
        emu.complete_secret_rotation()
        with pytest.raises(PyCronofyRequestError) as err:
            sdk(emu, refresh_token=client.auth.refresh_token).refresh_authorization()
        assert err.value.response.status_code == 401  # invalid_client: the old secret is retired
    finally:
        emu.stop()
