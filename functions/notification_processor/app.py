"""Notification processor on the notifications queue (filled by the webhook intake).

The records of one SQS batch are grouped by user: a user's notifications in the batch share one Read
Events (a burst of calendar changes, or Cronofy delivering a notification twice, costs one read),
and a notification queued before the user's changes were last read costs none. Replayed push
notifications are dropped earlier, at the webhook intake (`Store.accept_notification`); this handler
tells it when a job starts reading, so a genuine later change with the same `changes_since` passes.
A group that fails (a Cronofy outage) fails only its own records, each logged as one `sqs record
failed` line (message id, queue, reason), as is a malformed one; a throttled group is requeued as
delayed copies (its receive count kept) for when there is budget. No Powertools idempotency layer on
purpose: two genuine changes can share a `changes_since`, so a key built from the notification could
drop the second; processing is idempotent instead (a move or removal is reported once, recorded on
the event ref; busy periods are keyed by event).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from pydantic import BaseModel, ValidationError

from calsync import wiring
from calsync.cronofy import CronofyRateLimited, background
from calsync.observability import adopt_correlation_id, logger, metrics
from calsync.sqs_failures import log_failed_record
from calsync.sqs_handback import hand_back, requeue


class NotificationJob(BaseModel):
    type: str
    notification_type: str
    channel_id: str
    user_id: str
    org_id: str | None = None
    changes_since: str | None = None
    message_id: str | None = None


def _queued_at(record: dict) -> datetime | None:
    sent = (record.get("attributes") or {}).get("SentTimestamp")
    try:
        return datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else None
    except ValueError:
        return None


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context) -> dict:
    records = event.get("Records", [])
    failures: set[str] = set()
    groups: dict[str, list[tuple[dict, NotificationJob]]] = defaultdict(list)
    if records:
        adopt_correlation_id(records[0])
    for record in records:
        try:
            job = NotificationJob.model_validate_json(record["body"])
        except (ValidationError, ValueError) as error:
            log_failed_record(record.get("messageId"), record.get("eventSourceARN"), exc=error)
            failures.add(record["messageId"])
            continue
        groups[job.user_id].append((record, job))
    processor = wiring.notification_processor()
    for user_id, items in groups.items():
        ids = [r["messageId"] for r, _ in items]
        queued = [t for t in (_queued_at(r) for r, _ in items) if t is not None]
        with logger.append_context_keys(user_id=user_id):
            try:
                # Before any Cronofy call: from now on a copy of these notifications at the intake may
                # announce a later change (replays of them are dropped there).
                for _, job in items:
                    wiring.store().notification_read_started(job.channel_id, job.notification_type,
                                                              job.changes_since)
                with background():  # calendar writes go first when the shared limit is the bottleneck
                    result = processor.process_user(user_id, [j.model_dump() for _, j in items],
                                                    max(queued) if len(queued) == len(items) else None)
                logger.info("notifications processed", extra=result)
            except CronofyRateLimited as error:
                wait = error.retry_after or 1.0
                by_queue: dict[str, list[str]] = defaultdict(list)
                for record, _ in items:
                    # A delayed copy (the original succeeds: waiting for budget never burns a receive)
                    if not requeue(record.get("eventSourceARN", ""), record["body"],
                                   record.get("messageAttributes"), wait):
                        failures.add(record["messageId"])
                        by_queue[record.get("eventSourceARN", "")].append(record.get("receiptHandle", ""))
                        log_failed_record(record["messageId"], record.get("eventSourceARN"), exc=error)
                for queue_arn, handles in by_queue.items():
                    hand_back(queue_arn, handles, wait)
            except Exception as error:  # noqa: BLE001 - this user's records fail alone; SQS retries them
                for record, _ in items:
                    log_failed_record(record["messageId"], record.get("eventSourceARN"), exc=error)
                failures.update(ids)
    return {"batchItemFailures": [{"itemIdentifier": i} for i in sorted(failures)]}
