"""Notification processor on the notifications queue (filled by the webhook intake).

Per record (Powertools BatchProcessor): a failed record (Cronofy outage) is retried alone. Replayed
push notifications are dropped at the webhook intake (`Store.accept_notification`); this handler only
tells it when a job starts reading, so a genuine later change with the same `changes_since` passes. No
Powertools idempotency layer here on purpose: two genuine changes can share a `changes_since`, so a
key built from the notification could drop the second; processing is idempotent instead (a move or
removal is reported once, recorded on the event ref; busy refreshes overwrite).
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import BaseModel

from calsync import runtime
from calsync.observability import adopt_correlation_id, logger, metrics
from calsync.queueing import handing_back_when_throttled

processor = BatchProcessor(event_type=EventType.SQS)


class NotificationJob(BaseModel):
    type: str
    notification_type: str
    channel_id: str
    user_id: str
    org_id: str | None = None
    changes_since: str | None = None
    message_id: str | None = None


def handle_record(record: SQSRecord) -> dict:
    adopt_correlation_id(record)
    job = NotificationJob.model_validate_json(record.body)
    with logger.append_context_keys(user_id=job.user_id, notification_type=job.notification_type):
        # Before any Cronofy call: from now on a copy of this notification at the intake may announce a
        # later change (replays of it are dropped there).
        runtime.store().notification_read_started(job.channel_id, job.notification_type, job.changes_since)
        result = runtime.notification_processor().process(job.model_dump())
        logger.info("notification processed", extra=result)
        return result


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context) -> dict:
    return process_partial_response(
        event=event, record_handler=handing_back_when_throttled(handle_record), processor=processor, context=context
    )
