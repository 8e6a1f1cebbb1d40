"""Handing SQS work back for later: when Cronofy (or our own limiter) says wait, a failed message's
visibility timeout is set to that wait, so the retry comes when there is budget again instead of a
Lambda sleeping on it."""

from __future__ import annotations

import math
import random
from functools import cache

from botocore.exceptions import ClientError

from calsync.cronofy import CronofyRateLimited
from calsync.observability import logger
from calsync.runtime import aws_client

MAX_VISIBILITY = 12 * 3600


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


def handing_back_when_throttled(record_handler):
    """Wrap a Powertools record handler: a throttled record is handed back for later, then fails."""

    def wrapped(record):
        try:
            return record_handler(record)
        except CronofyRateLimited as error:
            hand_back(record.event_source_arn, [record.receipt_handle], error.retry_after or 1.0)
            raise

    return wrapped
