"""Handing SQS work back for later: when Cronofy (or our own limiter) says wait, the message comes back
when there is budget again instead of a Lambda sleeping on it. A delayed copy is sent and the original
succeeds, so throttling never counts towards the queue's maxReceiveCount (only real failures reach the
DLQ); if the copy cannot be sent, the failed message's visibility timeout is set to the wait instead.
(It was `queueing`; the name now says the one thing it does.)"""

from __future__ import annotations

import math
import random
from functools import cache

from botocore.exceptions import ClientError

from calsync.cronofy import CronofyRateLimited
from calsync.observability import logger
from calsync.wiring import aws_client

MAX_VISIBILITY = 12 * 3600
MAX_DELAY = 900  # SQS's longest DelaySeconds
MAX_REQUEUES = 50  # a message throttled this often (~12 h at the longest delay) fails as usual
REQUEUE_ATTRIBUTE = "calsync-requeues"


@cache
def _queue_url(queue_arn: str) -> str:
    _, _, _, _, account, name = queue_arn.split(":", 5)
    return aws_client("sqs").get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]


def hand_back(queue_arn: str, receipt_handles: list[str], seconds: float) -> None:
    """Make these messages visible again after about `seconds` (with jitter, so retries spread out)."""
    if not receipt_handles:
        return
    delay = min(MAX_VISIBILITY, max(1, math.ceil(seconds * random.uniform(1.0, 1.3))))
    sqs = aws_client("sqs")
    try:
        url = _queue_url(queue_arn)
        for handle in receipt_handles:
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=delay)
    except ClientError as error:  # the message still fails; it just comes back sooner
        logger.warning("could not hand messages back", extra={"error": str(error)})


def requeue(queue_arn: str, body: str, message_attributes: dict | None, seconds: float, count: bool = True) -> bool:
    """Put a copy of a throttled message back on its queue, delayed by about `seconds`, so the original
    can be deleted: waiting for Cronofy's budget never uses up one of the queue's `maxReceiveCount`
    receives (valid work does not reach the DLQ because the limit was busy). False when the copy could
    not be sent, or the message was already requeued MAX_REQUEUES times (then it fails as usual).
    `count=False`: a deferral for fairness (calsync.fairshare, bounded there), not counted as a requeue."""
    attributes = _send_attributes(message_attributes or {})
    if count:
        times = int(attributes.get(REQUEUE_ATTRIBUTE, {}).get("StringValue") or 0)
        if times >= MAX_REQUEUES:
            return False
        attributes[REQUEUE_ATTRIBUTE] = {"DataType": "Number", "StringValue": str(times + 1)}
    delay = min(MAX_DELAY, max(1, math.ceil(seconds * random.uniform(1.0, 1.3))))
    try:
        aws_client("sqs").send_message(QueueUrl=_queue_url(queue_arn), MessageBody=body, DelaySeconds=delay,
                                       MessageAttributes=attributes)
    except ClientError as error:
        logger.warning("could not requeue a throttled message", extra={"error": str(error)})
        return False
    return True


def _send_attributes(record_attributes: dict) -> dict:
    """A Lambda SQS record's message attributes (camelCase) as SendMessage takes them."""
    attributes = {}
    for name, value in record_attributes.items():
        if value.get("stringValue") is not None:
            attributes[name] = {"DataType": value.get("dataType", "String"), "StringValue": value["stringValue"]}
        elif value.get("binaryValue") is not None:
            attributes[name] = {"DataType": value.get("dataType", "Binary"), "BinaryValue": value["binaryValue"]}
    return attributes


def handing_back_when_throttled(record_handler):
    """Wrap a Powertools record handler: a throttled record is requeued for later as a fresh copy (and
    succeeds here), or, if that is not possible, handed back for later and failed."""

    def wrapped(record):
        try:
            return record_handler(record)
        except CronofyRateLimited as error:
            wait = error.retry_after or 1.0
            raw = getattr(record, "raw_event", None) or {}
            if requeue(record.event_source_arn, record.body, raw.get("messageAttributes"), wait):
                logger.info("throttled: message requeued", extra={"seconds": wait})
                return {"requeued": True}
            hand_back(record.event_source_arn, [record.receipt_handle], wait)
            raise

    return wrapped
