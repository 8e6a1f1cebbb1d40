"""A DLQ's messages are replayed onto the source queue after a fix, and then processed."""

import json

import boto3
import pytest
from moto import mock_aws

from calsync.milestones import event_id_for
from scripts import replay_dlq
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


# ---- the operator's tool (issue 22, item 6): help, region/profile, peek, dry run, plain errors ---------------

@pytest.fixture
def dlq(monkeypatch):
    """A DLQ holding three dead letters and its source queue, in moto. The stack lookup is the one part
    not run on moto: its CloudFormation needs openapi-spec-validator, which the dev environment lacks."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        sqs = boto3.client("sqs", region_name="eu-west-1")
        dlq_url = sqs.create_queue(QueueName="calendar-sync-test-MilestoneEventsDLQ")["QueueUrl"]
        source_url = sqs.create_queue(QueueName="calendar-sync-test-MilestoneEventsQueue")["QueueUrl"]
        for i in range(3):
            sqs.send_message(QueueUrl=dlq_url, MessageBody=json.dumps({"n": i}))
        looked_up = []

        def queue_urls(cfn, stack, queue):
            looked_up.append((cfn.meta.region_name, stack, queue))
            return source_url, dlq_url

        monkeypatch.setattr(replay_dlq, "queue_urls", queue_urls)
        yield sqs, dlq_url, source_url, looked_up


def depths(sqs, *urls):
    return [int(sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["ApproximateNumberOfMessages"])
                ["Attributes"]["ApproximateNumberOfMessages"]) for u in urls]


ARGS = ["--stack", "calendar-sync-test", "--queue", "MilestoneEvents", "--region", "eu-west-1"]


def test_help_describes_every_option(capsys):
    with pytest.raises(SystemExit) as done:
        replay_dlq.main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for action in replay_dlq.parser()._actions:
        assert action.help, action.dest  # no option without a description
    for option in ("--stack", "--queue", "--region", "--profile", "--peek", "--dry-run", "--max", "--manual"):
        assert option in text


def test_peek_shows_messages_and_leaves_them_visible_at_once(dlq, capsys):
    sqs, dlq_url, source_url, looked_up = dlq
    assert replay_dlq.main([*ARGS, "--peek", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and all(line["message_id"] and line["receive_count"] == 1 for line in lines)
    assert {json.loads(line["body"])["n"] for line in lines} <= {0, 1, 2}
    assert looked_up == [("eu-west-1", "calendar-sync-test", "MilestoneEvents")]
    # nothing moved, and every message can be received again right away (not after a visibility timeout)
    assert depths(sqs, dlq_url, source_url) == [3, 0]
    again = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    assert {line["message_id"] for line in lines} <= {m["MessageId"] for m in again}


def test_dry_run_counts_and_the_replay_moves_them_back(dlq, capsys):
    sqs, dlq_url, source_url, _ = dlq
    assert replay_dlq.main([*ARGS, "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out) == {"in_dlq": 3, "moved": 0, "dry_run": True}
    assert depths(sqs, dlq_url, source_url) == [3, 0]
    assert replay_dlq.main([*ARGS, "--manual"]) == 0
    assert json.loads(capsys.readouterr().out)["moved"] == 3
    assert depths(sqs, dlq_url, source_url) == [0, 3]


@pytest.fixture
def no_aws_setup(monkeypatch, tmp_path):
    """A machine with no AWS configuration at all."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "empty").write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "empty"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "empty"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.parametrize("extra, says", [
    ([], "no AWS region"),
    (["--region", "eu-west-1"], "no AWS credentials"),
    (["--region", "eu-west-1", "--profile", "nobody"], "AWS profile 'nobody' not found"),
])
def test_missing_region_credentials_or_profile_is_one_plain_line_and_status_2(no_aws_setup, capsys, extra, says):
    code = replay_dlq.main(["--stack", "calendar-sync-test", "--queue", "Cleanup", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("replay_dlq: ") and says in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
