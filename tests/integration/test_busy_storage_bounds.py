"""Issue 20, findings 4 and 5: whatever a calendar holds, busy storage is bounded and never says "free"
for busy time. Through the real handlers on the local stack (moto held to DynamoDB's real 400 KB item
limit, localdev/moto_limits.py, and the Cronofy emulator)."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import botocore.client
import pytest

from calsync import wiring
from calsync.busy import _window, week_of
from tests.helpers import connect, in_days, iso

ORG = "org_sunbright"


@contextlib.contextmanager
def busy_writes():
    """Busy-week items put, and DynamoDB requests, while the block runs."""
    counts: Counter = Counter()
    original = botocore.client.BaseClient._make_api_call

    def counting(client, operation, kwargs):
        if client.meta.service_model.service_name == "dynamodb":
            counts[operation] += 1
            for requests_ in (kwargs.get("RequestItems") or {}).values() if operation == "BatchWriteItem" else ():
                counts["busy_items_put"] += sum(1 for r in requests_ if "PutRequest" in r
                                                and r["PutRequest"]["Item"]["sk"]["S"].startswith("BUSY#"))
        return original(client, operation, kwargs)

    botocore.client.BaseClient._make_api_call = counting
    try:
        yield counts
    finally:
        botocore.client.BaseClient._make_api_call = original


def busy_items(stack, user_id: str) -> list[dict]:
    return [i for i in stack.raw_items() if i["pk"]["S"] == f"USER#{user_id}" and i["sk"]["S"].startswith("BUSY#")]


def member(stack, user_id: str, email: str):
    account = stack.emulator.add_calendar_account("google", email, calendars=[{"name": "Work", "primary": True}])
    return account, account["calendars"][0]["calendar_id"]


def busy_route(stack, session, user_id, start, end) -> dict:
    resp = session.get(stack.url(f"/v1/orgs/{ORG}/busy"),
                       params={"user_ids": user_id, "from": iso(start), "to": iso(end)})
    assert resp.status_code == 200, resp.text
    return resp.json()


def availability(stack, session, user_id, start, end, **extra) -> dict:
    body = {"user_ids": [user_id], "required": "all", "duration_minutes": 60, "from": iso(start), "to": iso(end),
            "timezone": "UTC", "working_hours": {"weekdays": [1, 2, 3, 4, 5, 6, 7], "start": "00:00", "end": "23:59"},
            **extra}
    resp = session.post(stack.url(f"/v1/orgs/{ORG}/availability"), json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_events_ending_in_2226_and_9999_store_only_the_weeks_of_the_window(stack):
    """Finding 4: one event to 2226 was 10,387 busy weeks rewritten on every notification and daily check
    (one to 9999 ~415,000). Now: only the weeks of the 61-day window, and only those that changed."""
    account, cal = member(stack, "u_far", "far@example.com")
    stack.emulator.add_external_event(cal, "Sabbatical", iso(in_days(2, 9)), "2226-03-01T00:00:00Z")
    stack.emulator.add_external_event(cal, "Forever", iso(in_days(4, 9)), "9999-12-31T00:00:00Z")
    stack.emulator.add_external_event(cal, "Long leave", in_days(5).date().isoformat(), "9999-12-31")
    session = stack.browser("u_far", ORG)
    with busy_writes() as connected:
        assert connect(stack, session, "google", account) == cal
    first, last = _window(datetime.now(UTC))
    weeks = sorted(i["sk"]["S"].removeprefix("BUSY#") for i in busy_items(stack, "u_far"))
    assert 9 <= len(weeks) <= 10 and connected["busy_items_put"] == len(weeks), (weeks, connected)
    assert week_of(datetime.combine(first, datetime.min.time(), UTC)) <= weeks[0] and weeks[-1] <= last.isoformat()
    # Busy all the way for the scheduler, its buffers included (a 9999 end has no room for one)
    start = in_days(3, 0)
    assert busy_route(stack, session, "u_far", start, start + timedelta(days=30))["users"]["u_far"] == [
        {"start": iso(start), "end": iso(start + timedelta(days=30))}]
    answer = availability(stack, session, "u_far", start, start + timedelta(days=30), buffer_minutes=120)
    assert answer["slots"] == [] and answer["members"]["u_far"]["stale"] is False
    # A change notification and the day's check write only the weeks that changed
    stack.emulator.add_external_event(cal, "Dentist", iso(in_days(1, 9)), iso(in_days(1, 10)))
    with busy_writes() as notified:
        stack.drain()
    assert notified["busy_items_put"] <= 1, notified
    connection = wiring.store().get_connection("u_far")
    wiring.store().update_connection("u_far", lambda c: c.model_copy(update={
        "last_checked_at": connection.last_checked_at - timedelta(days=2),
        "busy_rebuilt_at": connection.busy_rebuilt_at - timedelta(days=8)}))
    with busy_writes() as checked:
        report = stack.invoke("ReconcilerFunction", {"user_ids": ["u_far"]})
    assert report.get("errors", 0) == 0 and checked["busy_items_put"] == 0, (report, checked)
    assert len(busy_items(stack, "u_far")) == len(weeks)
    assert sum(len(stack.queue_messages(q)) for q in ("NotificationsDLQ", "MilestoneEventsDLQ")) == 0


@pytest.fixture
def roomy_stack(monkeypatch):
    # Reading 7,500 events is 150 pages: a rate limit this test is not about
    monkeypatch.setenv("RATE_LIMIT_PER_SECOND", "100000")
    monkeypatch.setenv("RATE_LIMIT_PER_MINUTE", "6000000")
    from localdev.stack import DevStack

    with DevStack() as stack:
        yield stack


DENSE = 7_500  # one-minute blocks back to back: as event ids and times, 435 KB for one week's item


def test_a_week_of_back_to_back_one_minute_blocks_is_busy_not_free(roomy_stack):
    """Finding 5: a dense week's item went over DynamoDB's 400 KB; the backfill still said "succeeded",
    the busy route answered [] for a booked hour, availability offered slots through the week and the
    notification dead-lettered. Now the week's blocks are merged before they are stored."""
    stack = roomy_stack
    account, cal = member(stack, "u_dense", "dense@example.com")
    monday = datetime.combine(in_days(8).date(), datetime.min.time(), UTC)
    monday -= timedelta(days=monday.weekday())
    uids = []
    for i in range(DENSE):  # Monday 00:00 to Saturday 05:00, every minute booked
        at = monday + timedelta(minutes=i)
        uids.append(stack.emulator.add_external_event(cal, f"Slot {i}", iso(at), iso(at + timedelta(minutes=1))))
    booked_until = monday + timedelta(minutes=DENSE)
    session = stack.browser("u_dense", ORG)
    assert connect(stack, session, "google", account) == cal
    assert wiring.store().get_backfill("u_dense")["status"] == "succeeded"
    hour = monday + timedelta(days=2, hours=10)
    answer = busy_route(stack, session, "u_dense", hour, hour + timedelta(hours=1))
    assert answer["users"]["u_dense"] == [{"start": iso(hour), "end": iso(hour + timedelta(hours=1))}]
    assert answer["members"]["u_dense"]["stale"] is False
    # Availability: nothing until the week's last booked minute
    slots = availability(stack, session, "u_dense", monday, monday + timedelta(days=7), max_results=1)["slots"]
    assert [s["start"] for s in slots] == [iso(booked_until)]
    # A change notification goes through (its read is the day's check as well: the week is rebuilt)
    stack.emulator.add_external_event(cal, "Lunch", iso(booked_until), iso(booked_until + timedelta(hours=1)))
    stack.drain()
    assert sum(len(stack.queue_messages(q)) for q in ("NotificationsDLQ", "MilestoneEventsDLQ")) == 0
    answer = busy_route(stack, session, "u_dense", hour, booked_until + timedelta(hours=2))
    assert answer["users"]["u_dense"] == [{"start": iso(hour), "end": iso(booked_until + timedelta(hours=1))}]
    assert answer["members"]["u_dense"]["stale"] is False
    # The next ones read the changed events only. A new event is added as it is
    tea = booked_until + timedelta(hours=1)
    time.sleep(1.05)  # created in a later whole second than the week's last write (both are whole seconds)
    stack.emulator.add_external_event(cal, "Tea", iso(tea), iso(tea + timedelta(minutes=30)))
    stack.drain()
    answer = busy_route(stack, session, "u_dense", hour, booked_until + timedelta(hours=2))
    assert answer["users"]["u_dense"] == [{"start": iso(hour), "end": iso(tea + timedelta(minutes=30))}]
    assert answer["members"]["u_dense"]["stale"] is False
    # but the merged week names no event, so a removal inside it cannot be taken out: the week stays as
    # busy as it was and is stale until the next rebuild
    freed = monday + timedelta(minutes=3_480)  # hour's first minute
    stack.emulator.delete_event_as_user(cal, event_uid=uids[3_480])
    stack.drain()
    assert sum(len(stack.queue_messages(q)) for q in ("NotificationsDLQ", "MilestoneEventsDLQ")) == 0
    answer = busy_route(stack, session, "u_dense", hour, booked_until + timedelta(hours=2))
    assert answer["users"]["u_dense"] == [{"start": iso(hour), "end": iso(tea + timedelta(minutes=30))}]
    assert answer["members"]["u_dense"]["stale"] is True
    later = monday + timedelta(days=8)
    assert busy_route(stack, session, "u_dense", later, later + timedelta(hours=1))["members"]["u_dense"][
        "stale"] is False
    # The reconciler's next visit rebuilds them (it is due now, not in a week): exact and current again
    assert wiring.store().get_connection("u_dense").busy_rebuilt_at is None
    assert stack.invoke("ReconcilerFunction", {"user_ids": ["u_dense"]}).get("errors", 0) == 0
    answer = busy_route(stack, session, "u_dense", hour, booked_until + timedelta(hours=2))
    assert answer["users"]["u_dense"] == [{"start": iso(freed + timedelta(minutes=1)),
                                           "end": iso(tea + timedelta(minutes=30))}]
    assert answer["members"]["u_dense"]["stale"] is False
