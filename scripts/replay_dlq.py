"""Replay a dead-letter queue's messages onto its source queue after a fix.

    python scripts/replay_dlq.py --stack calendar-sync-prod --queue MilestoneEvents [--dry-run] [--max 1000]
    (or: make replay-dlq STAGE=prod QUEUE=MilestoneEvents)

Queues: UserEvents, Cleanup, MilestoneEvents, Notifications, CalendarChanges. The script finds the
DLQ and its source queue from the stack's resources. In AWS it uses SQS's own redrive
(StartMessageMoveTask: server-side, keeps message attributes, rate-controlled); with --manual (or
where that API is missing, e.g. moto) it moves messages itself: receive, send to the source queue,
delete from the DLQ, so each message is either still in the DLQ or back on the source queue, never lost.
The handlers are idempotent, so a replayed message that was partly processed before is safe.
"""

from __future__ import annotations

import argparse
import sys

import boto3
from botocore.exceptions import ClientError


def queue_urls(cfn, stack: str, queue: str) -> tuple[str, str]:
    resources = {}
    paginator = cfn.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=stack):
        for r in page["StackResourceSummaries"]:
            resources[r["LogicalResourceId"]] = r["PhysicalResourceId"]
    return resources[f"{queue}Queue"], resources[f"{queue}DLQ"]


def arn_of(sqs, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def depth(sqs, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--queue", required=True,
                        choices=["UserEvents", "Cleanup", "MilestoneEvents", "Notifications", "CalendarChanges"])
    parser.add_argument("--max", type=int, default=10_000)
    parser.add_argument("--manual", action="store_true", help="move messages ourselves instead of SQS redrive")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    sqs = boto3.client("sqs")
    source_url, dlq_url = queue_urls(boto3.client("cloudformation"), args.stack, args.queue)
    print(replay(sqs, dlq_url, source_url, args.max, args.manual, args.dry_run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
