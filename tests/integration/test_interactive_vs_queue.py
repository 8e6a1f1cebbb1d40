"""Issue 10, finding 3: interactive calls cannot starve queue work, calendar routes answer 503 with
Retry-After when Cronofy is down or the budget is spent, and throttled queue messages keep their
receive count (valid work never reaches a DLQ because the limit was busy)."""

import boto3

from calsync import wiring
from localdev import browser
from tests.helpers import in_days, managed_events, milestone


def pending_jane(stack, jane):
    outcome = browser.connect(jane["session"], stack.base_url, "google", jane["work"]["profile_id"])
    assert outcome["calendar_sync"] == "choose_calendar"


def test_the_calendar_list_is_read_from_cronofy_at_most_once_a_minute_per_user(stack, jane):
    pending_jane(stack, jane)
    stack.emulator.clear_request_log()
    for _ in range(5):  # the picker reloaded, a double click...
        resp = jane["session"].get(stack.url("/v1/calendar/calendars"))
        assert resp.status_code == 200 and len(resp.json()["calendars"]) == 2
    installs = next(c["id"] for c in resp.json()["calendars"] if c["name"] == "Installs")
    assert jane["session"].put(stack.url("/v1/calendar/connection"), json={"calendar_id": installs}).status_code == 200
    assert stack.emulator.count_requests(method="GET", path_prefix="/v1/calendars") == 1


def test_cronofy_down_is_a_503_with_retry_after_not_a_500(stack, jane):
    pending_jane(stack, jane)
    stack.emulator.add_fault(path_prefix="/v1/calendars", status=503, count=None)
    for method, kwargs in (("GET", {}), ("PUT", {"json": {"calendar_id": "cal_any"}})):
        path = "/v1/calendar/calendars" if method == "GET" else "/v1/calendar/connection"
        resp = jane["session"].request(method, stack.url(path), **kwargs)
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"]["code"] == "calendar_service_unavailable"
        assert int(resp.headers["Retry-After"]) >= 1
    stack.emulator.clear_faults()
    assert jane["session"].get(stack.url("/v1/calendar/calendars")).status_code == 200


def test_a_spent_budget_is_a_503_with_retry_after(stack, jane):
    pending_jane(stack, jane)
    wiring.rate_limiter().penalize(30)  # e.g. Cronofy said 429: everyone waits
    resp = jane["session"].get(stack.url("/v1/calendar/calendars"))
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "calendar_service_unavailable"
    assert 25 <= int(resp.headers["Retry-After"]) <= 60


def test_a_throttled_milestone_message_keeps_its_receive_count(stack, jane_cal):
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = stack.queue_urls["MilestoneEventsQueue"]
    message = milestone("ms_throttled", 1, ["u_jane"], in_days(3))
    # The limit is busy for a few seconds, and this message was already received 5 times (maxReceiveCount)
    wiring.rate_limiter().penalize(4)
    event = stack.sqs_event("MilestoneEventsQueue", [message])
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "5"
    result = stack.invoke("MilestonePushFunction", event)
    # Then it does not fail (which would send it to the DLQ): a fresh, delayed copy waits on the queue
    assert result["batchItemFailures"] == []
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    assert attrs["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"
    # and once there is budget again the event reaches the calendar
    stack.drain()
    assert "sn-ms_throttled" in managed_events(stack, jane_cal)
    assert stack.queue_messages("MilestoneEventsDLQ") == []


def test_throttled_notifications_and_cleanups_are_requeued_too(stack, teammate):
    outcome = browser.connect(teammate["session"], stack.base_url, "microsoft", teammate["account"]["profile_id"])
    assert outcome["calendar_sync"] == "connected"
    stack.drain()
    wiring.rate_limiter().penalize(4)
    teammate["session"].delete(stack.url("/v1/calendar/connection"))
    [job] = stack.queue_messages("CleanupQueue")
    event = stack.sqs_event("CleanupQueue", [job])
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "5"
    assert stack.invoke("DeactivationCleanupFunction", event)["batchItemFailures"] == []
    stack.drain()
    assert teammate["session"].get(stack.url("/v1/calendar/connection")).json() == {"state": "not_connected"}
    assert stack.queue_messages("CleanupDLQ") == []
