"""Look at a dead-letter queue, and put its messages back on their queue after a fix.

    python scripts/replay_dlq.py --stack calendar-sync-prod --queue MilestoneEvents --region us-east-1 --peek 5
    python scripts/replay_dlq.py --stack calendar-sync-prod --queue MilestoneEvents --region us-east-1 --dry-run
    python scripts/replay_dlq.py --stack calendar-sync-prod --queue MilestoneEvents --region us-east-1
    (or: make replay-dlq STAGE=prod QUEUE=MilestoneEvents [REGION=us-east-1] [PROFILE=ops] [PEEK=5])

Queues: UserEvents, Cleanup, MilestoneEvents, Notifications, CalendarChanges. The script finds the
DLQ and its source queue from the stack's resources. `--peek N` prints up to N messages (one JSON line
each: SQS message id, when it was first sent, how often it was received, the body) and makes them
visible again at once: nothing is moved or deleted. `--dry-run` says how many messages wait. Otherwise,
in AWS it uses SQS's own redrive (StartMessageMoveTask: server-side, keeps message attributes,
rate-controlled); with --manual (or where that API is missing, e.g. moto) it moves messages itself:
receive, send to the source queue, delete from the DLQ, so each message is either still in the DLQ or
back on the source queue, never lost. The handlers are idempotent, so a replayed message that was partly
processed before is safe.

A missing region, credentials or profile is one plain line on stderr and exit status 2; any other AWS
error, one line and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError, ProfileNotFound

QUEUES = ["UserEvents", "Cleanup", "MilestoneEvents", "Notifications", "CalendarChanges"]
PEEK_HOLD_SECONDS = 30  # how long a peeked message stays hidden while the peek runs (released at once after)


class SetupError(Exception):
    """Region, credentials or profile missing: the operator's setup, not the queue (exit status 2)."""


def queue_urls(cfn, stack: str, queue: str) -> tuple[str, str]:
    resources = {}
    paginator = cfn.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=stack):
        for r in page["StackResourceSummaries"]:
            resources[r["LogicalResourceId"]] = r["PhysicalResourceId"]
    try:
        return resources[f"{queue}Queue"], resources[f"{queue}DLQ"]
    except KeyError as missing:
        raise LookupError(f"stack {stack} has no queue {missing.args[0]}") from None


def arn_of(sqs, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def depth(sqs, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def peek(sqs, dlq_url: str, count: int) -> list[dict]:
    """Up to `count` messages of the DLQ, left on it and visible again at once."""
    seen: list[dict] = []
    held: list[str] = []
    try:
        while len(seen) < count:
            batch = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=min(10, count - len(seen)),
                                        VisibilityTimeout=PEEK_HOLD_SECONDS, WaitTimeSeconds=1,
                                        AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
            if not batch:
                break
            for m in batch:
                held.append(m["ReceiptHandle"])
                attrs = m.get("Attributes") or {}
                sent = attrs.get("SentTimestamp")
                seen.append({
                    "message_id": m["MessageId"],
                    "sent_at": datetime.fromtimestamp(int(sent) / 1000, UTC).isoformat() if sent else None,
                    "receive_count": int(attrs.get("ApproximateReceiveCount", 0)),
                    "body": m["Body"],
                })
    finally:
        for i in range(0, len(held), 10):  # visible again now, not after the hold
            sqs.change_message_visibility_batch(QueueUrl=dlq_url, Entries=[
                {"Id": str(j), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for j, handle in enumerate(held[i:i + 10])])
    return seen


def move_manually(sqs, dlq_url: str, source_url: str, limit: int) -> int:
    moved = 0
    while moved < limit:
        batch = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=min(10, limit - moved),
                                    MessageAttributeNames=["All"], WaitTimeSeconds=1).get("Messages", [])
        if not batch:
            break
        for m in batch:
            kwargs = {"QueueUrl": source_url, "MessageBody": m["Body"]}
            if m.get("MessageAttributes"):
                kwargs["MessageAttributes"] = m["MessageAttributes"]
            sqs.send_message(**kwargs)  # first send, then delete: a crash in between duplicates, never loses
            sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=m["ReceiptHandle"])
            moved += 1
    return moved


def replay(sqs, dlq_url: str, source_url: str, limit: int, manual: bool, dry_run: bool) -> dict:
    waiting = depth(sqs, dlq_url)
    if dry_run:
        return {"in_dlq": waiting, "moved": 0, "dry_run": True}
    if not manual:
        try:
            task = sqs.start_message_move_task(SourceArn=arn_of(sqs, dlq_url), DestinationArn=arn_of(sqs, source_url),
                                               MaxNumberOfMessagesPerSecond=50)
            return {"in_dlq": waiting, "move_task": task["TaskHandle"]}
        except (ClientError, AttributeError, NotImplementedError):
            pass  # not available here (moto): move them ourselves
    return {"in_dlq": waiting, "moved": move_manually(sqs, dlq_url, source_url, limit)}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="replay_dlq.py", description=__doc__.split("\n\n")[0],
                                epilog="Peek first, then --dry-run, then replay. See docs/operations.md.")
    p.add_argument("--stack", required=True, help="the CloudFormation stack, e.g. calendar-sync-prod")
    p.add_argument("--queue", required=True, choices=QUEUES, help="which queue's DLQ (the alarm names it)")
    p.add_argument("--region", help="AWS region of the stack (default: AWS_REGION / AWS_DEFAULT_REGION, or the "
                                     "profile's region)")
    p.add_argument("--profile", help="AWS named profile for credentials and region (default: AWS_PROFILE, or the "
                                      "default credential chain)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--peek", type=int, metavar="N",
                      help="print up to N messages (JSON lines) and leave them on the DLQ, visible again at once")
    mode.add_argument("--dry-run", action="store_true", help="only say how many messages wait on the DLQ")
    p.add_argument("--max", type=int, default=10_000, metavar="N",
                   help="move at most N messages (with --manual or where SQS redrive is missing; default 10000)")
    p.add_argument("--manual", action="store_true",
                   help="move messages one by one (receive, send, delete) instead of SQS's redrive task")
    return p


def _session(region: str | None, profile: str | None) -> boto3.Session:
    try:
        session = boto3.Session(profile_name=profile, region_name=region)
    except ProfileNotFound:
        raise SetupError(f"AWS profile {profile!r} not found (aws configure list-profiles)") from None
    if not session.region_name:
        raise SetupError("no AWS region: pass --region (or REGION= to make), or set AWS_REGION")
    if session.get_credentials() is None:
        raise SetupError("no AWS credentials: pass --profile (or PROFILE= to make), run aws sso login, "
                         "or set AWS_PROFILE")
    return session


def run(args: argparse.Namespace) -> None:
    session = _session(args.region, args.profile)
    sqs = session.client("sqs")
    source_url, dlq_url = queue_urls(session.client("cloudformation"), args.stack, args.queue)
    if args.peek is not None:
        for message in peek(sqs, dlq_url, args.peek):
            print(json.dumps(message))
        return
    print(json.dumps(replay(sqs, dlq_url, source_url, args.max, args.manual, args.dry_run)))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.peek is not None and args.peek < 1:
        parser().error("--peek takes a number of messages, 1 or more")
    try:
        run(args)
    except (SetupError, NoRegionError, NoCredentialsError) as error:
        print(f"replay_dlq: {error}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError, LookupError) as error:
        print(f"replay_dlq: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
