"""A DLQ's messages are replayed onto the source queue after a fix, and then processed."""

import boto3

from calsync.milestones import event_id_for
from scripts.replay_dlq import replay
from tests.helpers import managed_events, milestone


def test_dead_letters_are_replayed_after_the_fix(stack, jane_cal):
    # Cronofy refuses our writes (a bug of ours, say): the message fails until it reaches the DLQ
    stack.emulator.add_fault(path_prefix="/v1/batch", status=422, count=None)
    stack.send("MilestoneEventsQueue", milestone("ms_dlq", 1, ["u_jane"]))
    stack.drain()
    sqs = boto3.client("sqs", region_name="us-east-1")
    dlq, source = stack.queue_urls["MilestoneEventsDLQ"], stack.queue_urls["MilestoneEventsQueue"]
    assert replay(sqs, dlq, source, 100, manual=False, dry_run=True)["in_dlq"] == 1
    # The fix: Cronofy accepts the writes again. Then the replay.
    stack.emulator.clear_faults()
    report = replay(sqs, dlq, source, 100, manual=False, dry_run=False)
    assert report["moved"] == 1
    stack.drain()
    assert event_id_for("ms_dlq") in managed_events(stack, jane_cal)
    assert stack.queue_messages("MilestoneEventsDLQ") == []
