"""Issue 10, finding 4: one heavy calendar hurts nobody. A user with 10,000 short appointments (their
busy periods used to be one DynamoDB item, past the 400 KB limit) connects, is backfilled, gets
notifications and visits, and the busy route answers: busy periods live in one item per week."""

from datetime import UTC, datetime, timedelta

import pytest

from calsync import wiring
from localdev.stack import DevStack
from tests.helpers import connect, in_days, iso, milestone, push

EVENTS = 10_000


@pytest.fixture
def roomy_stack(monkeypatch):
    # Reading 10,000 events is 200 pages: a limit this test is not about
    monkeypatch.setenv("RATE_LIMIT_PER_SECOND", "100000")
    monkeypatch.setenv("RATE_LIMIT_PER_MINUTE", "6000000")
    with DevStack() as stack:
        yield stack


def test_ten_thousand_appointments_are_busy_periods_and_nothing_fails(roomy_stack):
    stack = roomy_stack
    account = stack.emulator.add_calendar_account("google", "busy@example.com",
                                                  calendars=[{"name": "Work", "primary": True}])
    cal = account["calendars"][0]["calendar_id"]
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    for i in range(EVENTS):  # ~170 ten-minute appointments a day for two months
        at = start + timedelta(minutes=8 * i)
        stack.emulator.add_external_event(cal, f"Call {i}", iso(at), iso(at + timedelta(minutes=5)))
    session = stack.browser("u_busy", "org_sunbright")
    assert connect(stack, session, "google", account) == cal  # backfill (and its busy rebuild) succeeded
    items = [i for i in stack.raw_items() if i["pk"]["S"] == "USER#u_busy" and i["sk"]["S"].startswith("BUSY#")]
    sizes = [len(str(i)) for i in items]
    assert len(items) >= 8 and max(sizes) < 300_000, (len(items), max(sizes))
    day = in_days(3, 0)
    busy = session.get(stack.url("/v1/orgs/org_sunbright/busy"),
                       params={"user_ids": "u_busy", "from": iso(day), "to": iso(day + timedelta(hours=1))}).json()
    # every 8 minutes a 5-minute call: 8 periods start in that hour
    assert len(busy["users"]["u_busy"]) == 8, busy
    # a change notification and a reconciler visit go through; a milestone still reaches the calendar
    stack.emulator.add_external_event(cal, "One more", iso(in_days(5, 9)), iso(in_days(5, 10)))
    stack.drain()
    assert push(stack, milestone("ms_heavy", 1, ["u_busy"], in_days(4))) == set()
    report = stack.invoke("ReconcilerFunction", {"user_ids": ["u_busy"]})
    assert report.get("errors", 0) == 0
    dead = sum(len(stack.queue_messages(q)) for q in ("NotificationsDLQ", "MilestoneEventsDLQ"))
    assert dead == 0
    assert wiring.store().get_connection("u_busy").state.value == "connected"
