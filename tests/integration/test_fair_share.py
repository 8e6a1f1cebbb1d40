"""A fair share across orgs (issue 21 item 5): while the shared Cronofy limiter is short, an org that took
more than its share in the last minute has its milestone messages handed back to SQS, so another org's
messages in the same batch go first; with room, or after MAX_DEFERRALS, nothing waits."""

import time

import pytest

from calsync import wiring
from calsync.fairshare import DEFER_ATTRIBUTE, MAX_DEFERRALS
from calsync.milestones import event_id_for
from tests.helpers import connect, managed_events, milestone, push


@pytest.fixture
def storm_cal(stack):
    """Ana, in another org (the one having a weather day)."""
    account = stack.emulator.add_calendar_account("google", "ana@stormfront.example",
                                                  calendars=[{"name": "Calendar", "primary": True}])
    return connect(stack, stack.browser("u_ana", "org_storm"), "google", account)


def _short(stack):
    """The shared limiter with a quarter of its burst left (queue work still passes)."""
    limiter = wiring.rate_limiter()
    tat = time.time() + (limiter.burst * 0.75) / limiter.rate
    wiring.aws_client("dynamodb").put_item(TableName=wiring.get_settings().table_name,
                            Item={"pk": {"S": "RATELIMIT#cronofy"}, "sk": {"S": "GCRA"}, "tat": {"N": f"{tat:.6f}"}})
    assert wiring.fair_share().short()


def _storm_took_most(n=200):
    wiring.fair_share().record({"org_storm": n, "org_sunbright": 5, "org_third": 4})


def _delayed(stack) -> int:
    """Messages waiting out their delay on the milestone queue."""
    attributes = wiring.aws_client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_urls["MilestoneEventsQueue"], AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"])


def test_an_org_over_its_share_waits_while_the_limiter_is_short(stack, jane_cal, storm_cal):
    _storm_took_most()
    _short(stack)
    storm = [milestone(f"ms_s{i}", 1, ["u_ana"], org_id="org_storm") for i in range(3)]
    ours = milestone("ms_ours", 1, ["u_jane"])
    assert push(stack, *storm, ours) == set()  # nothing failed: the storm's messages were copied back
    assert event_id_for("ms_ours") in managed_events(stack, jane_cal)
    assert not {event_id_for(f"ms_s{i}") for i in range(3)} & set(managed_events(stack, storm_cal))
    assert _delayed(stack) == 3  # each storm message comes back as a delayed copy


def test_the_deferred_messages_arrive_later_and_nothing_is_lost(stack, jane_cal, storm_cal):
    _storm_took_most()
    _short(stack)
    stack.send("MilestoneEventsQueue", milestone("ms_s1", 1, ["u_ana"], org_id="org_storm"))
    stack.send("MilestoneEventsQueue", milestone("ms_ours", 1, ["u_jane"]))
    stack.drain()  # deferred at most MAX_DEFERRALS times, then synced even if the limiter stays short
    assert event_id_for("ms_s1") in managed_events(stack, storm_cal)
    assert event_id_for("ms_ours") in managed_events(stack, jane_cal)
    assert stack.queue_messages("MilestoneEventsDLQ") == []


def test_with_room_in_the_limiter_nobody_waits(stack, jane_cal, storm_cal):
    _storm_took_most()
    assert not wiring.fair_share().short()
    assert push(stack, milestone("ms_s1", 1, ["u_ana"], org_id="org_storm")) == set()
    assert event_id_for("ms_s1") in managed_events(stack, storm_cal)


def test_a_message_deferred_too_often_goes_now(stack, jane_cal, storm_cal):
    _storm_took_most()
    _short(stack)
    event = stack.sqs_event("MilestoneEventsQueue", [milestone("ms_s1", 1, ["u_ana"], org_id="org_storm")])
    event["Records"][0]["messageAttributes"] = {
        DEFER_ATTRIBUTE: {"dataType": "Number", "stringValue": str(MAX_DEFERRALS)}}
    assert stack.invoke("MilestonePushFunction", event)["batchItemFailures"] == []
    assert event_id_for("ms_s1") in managed_events(stack, storm_cal)


def test_a_small_org_is_never_deferred(stack, jane_cal, storm_cal):
    wiring.fair_share().record({"org_storm": 10, "org_sunbright": 1, "org_third": 1})  # under the floor (~24)
    _short(stack)
    assert push(stack, milestone("ms_s1", 1, ["u_ana"], org_id="org_storm")) == set()
    assert event_id_for("ms_s1") in managed_events(stack, storm_cal)
