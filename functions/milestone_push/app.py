"""Milestone push on the milestone queue: `milestone.upserted` / `milestone.deleted` from the core
platform, full-state with a growing version.

Each message only advances the milestone mirror; then conflict alerts are judged on the new mirror
(calsync.conflict_watch, DynamoDB only), and the batch's milestones are synced together
so their calendar writes go to Cronofy through /v1/batch (≤ 50 per request, per user). A failed
write fails only the messages of its milestone. Why the batch response is built here rather than
with Powertools' BatchProcessor: the processor handles records one at a time, and batching writes
across the records of one SQS batch is the point of this function.
"""

from __future__ import annotations

from collections import defaultdict

from pydantic import TypeAdapter

from calsync import wiring
from calsync.fairshare import DEFER_ATTRIBUTE, DEFER_SECONDS, MAX_DEFERRALS, deferrals
from calsync.milestones import MilestoneDeleted, MilestoneMessage, MilestoneUpserted
from calsync.observability import adopt_correlation_id, logger, metrics
from calsync.sqs_failures import PROCESSING_FAILED, REFUSED, THROTTLED, log_failed_record
from calsync.sqs_handback import hand_back, requeue
from calsync.store import MilestoneOrgMismatch

_messages = TypeAdapter(MilestoneMessage)


class _Record:
    """The few SQS record fields used here (the Powertools data classes package would add ~45 ms of
    cold start for them)."""

    def __init__(self, raw: dict):
        self.message_id = raw["messageId"]
        self.body = raw["body"]
        self.receipt_handle = raw.get("receiptHandle", "")
        self.event_source_arn = raw.get("eventSourceARN", "")
        self.message_attributes = raw.get("messageAttributes") or {}


def _mirror(message: MilestoneUpserted | MilestoneDeleted) -> tuple[str, bool]:
    store = wiring.store()
    if isinstance(message, MilestoneUpserted):
        m = message.milestone
        return m.milestone_id, store.put_mirror_if_newer(message.org_id, m.milestone_id, m.version,
                                                         m.model_dump_json())
    return message.milestone_id, store.put_mirror_if_newer(message.org_id, message.milestone_id,
                                                           message.version, None)


def _accept(record: _Record) -> tuple[str, str] | None:
    """Advance the mirror with one record's message: its (milestone id, org id), or None when the record
    fails."""
    try:
        message = _messages.validate_json(record.body)
        milestone_id, newer = _mirror(message)
    except MilestoneOrgMismatch as error:
        # Never let one org's message overwrite another org's milestone: refused (DLQ, alarm).
        log_failed_record(record.message_id, record.event_source_arn, REFUSED,
                          error=f"the milestone belongs to another org: {str(error)[:300]}")
        return None
    except Exception as error:  # noqa: BLE001 - this record fails alone (malformed: for good); SQS retries it
        log_failed_record(record.message_id, record.event_source_arn, exc=error)
        return None
    if not newer:
        logger.debug("stale or repeated milestone version", extra={"milestone_id": milestone_id})
    return milestone_id, message.org_id


def _judge_conflicts(milestone_ids: list[str]) -> set[str]:
    """Conflict alerts for the batch's milestones, on the mirror just stored and before the calendar writes
    (the schedule index still names users this version unassigns): the milestones that failed."""
    failed: set[str] = set()
    watch = wiring.conflict_watch()
    for milestone_id in milestone_ids:
        try:
            watch.milestones_changed([milestone_id])
        except Exception:  # noqa: BLE001 - this milestone's messages are retried; the others go on
            logger.exception("conflicts not judged", extra={"milestone_id": milestone_id})
            failed.add(milestone_id)
    return failed


def _sync(milestone_ids: list[str]) -> tuple[set[str], float | None, Exception | None]:
    """Sync the batch's milestones together: the ones that failed, how long to wait when throttled, and
    what broke the whole sync, if anything."""
    try:
        result = wiring.sync_engine().sync(milestone_ids)
    except Exception as error:  # noqa: BLE001 - the whole sync failed; every message of it is retried
        return set(milestone_ids), None, error
    return result.failed, result.retry_after, None


def _explain(records: list[_Record], failures: set[str], accepted: dict[str, str], retry_after: float | None,
             error: Exception | None, unjudged: set[str]) -> None:
    """One `sqs record failed` line for each record of the batch that failed after it was accepted (those
    refused at acceptance were logged there)."""
    for record in records:
        if record.message_id not in failures or record.message_id not in accepted:
            continue
        milestone_id = accepted[record.message_id]
        if error is not None:
            log_failed_record(record.message_id, record.event_source_arn, exc=error, milestone_id=milestone_id)
        elif milestone_id in unjudged:
            log_failed_record(record.message_id, record.event_source_arn, PROCESSING_FAILED, milestone_id=milestone_id,
                              error="its conflict alerts could not be judged (see 'conflicts not judged' before "
                                    "this line)")
        elif retry_after is not None:
            log_failed_record(record.message_id, record.event_source_arn, THROTTLED, milestone_id=milestone_id,
                              retry_after=retry_after)
        else:
            log_failed_record(record.message_id, record.event_source_arn, PROCESSING_FAILED, milestone_id=milestone_id,
                              error="Cronofy refused or failed this milestone's calendar writes (see the warnings "
                                    "before this line)")


def _wait_for_budget(records: list[_Record], throttled: set[str], retry_after: float, failures: set[str]) -> None:
    """Rate limited: come back when there is budget, rather than at once, as a fresh copy (the original
    succeeds, so waiting for budget never moves a valid message towards the DLQ); a record that cannot
    be copied is handed back with that visibility timeout."""
    by_queue: dict[str, list[str]] = defaultdict(list)
    requeued = 0
    for record in records:
        if record.message_id not in throttled:
            continue
        if requeue(record.event_source_arn, record.body, record.message_attributes, retry_after):
            failures.discard(record.message_id)
            requeued += 1
        else:
            by_queue[record.event_source_arn].append(record.receipt_handle)
    for queue_arn, handles in by_queue.items():
        hand_back(queue_arn, handles, retry_after)
    logger.info("throttled: messages requeued or handed back", extra={
        "requeued": requeued, "handed_back": len(throttled) - requeued, "seconds": retry_after})


def _fair_share(records: list[_Record], accepted: dict[str, str], org_of: dict[str, str],
                by_milestone: dict[str, list[str]]) -> None:
    """When the shared limiter is short, the messages of an org over its share (calsync.fairshare) go back
    to the queue as delayed copies (at most MAX_DEFERRALS times each) and leave this batch: the other
    orgs' messages take the budget first. A milestone with a message that stays keeps all of them here."""
    try:
        over = wiring.fair_share().over_share({org_of[mid] for mid in by_milestone})
    except Exception:  # noqa: BLE001 - fairness is an optimisation: without it the batch goes on as before
        logger.exception("fair share not judged")
        return
    if not over:
        return
    deferrable = {mid for mid in by_milestone if org_of[mid] in over}
    for record in records:  # a milestone with a message deferred too often is synced now, all of it
        mid = accepted.get(record.message_id)
        if mid in deferrable and deferrals(record.message_attributes) >= MAX_DEFERRALS:
            deferrable.discard(mid)
    deferred = 0
    for record in records:
        mid = accepted.get(record.message_id)
        if mid not in deferrable:
            continue
        attributes = dict(record.message_attributes)
        attributes[DEFER_ATTRIBUTE] = {"dataType": "Number",
                                       "stringValue": str(deferrals(record.message_attributes) + 1)}
        if not requeue(record.event_source_arn, record.body, attributes, DEFER_SECONDS, count=False):
            deferrable.discard(mid)  # cannot be copied: it is synced now (fairness never loses a message)
    for record in records:
        mid = accepted.get(record.message_id)
        if mid in deferrable:
            del accepted[record.message_id]
            deferred += 1
    for mid in deferrable:
        by_milestone.pop(mid, None)
    if deferred:
        metrics.add_metric(name="FairShareDeferred", unit="Count", value=deferred)
        logger.info("over its share while the limiter is short: messages deferred",
                    extra={"orgs": sorted(over), "deferred": deferred, "seconds": DEFER_SECONDS})


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context) -> dict:
    failures: set[str] = set()
    accepted: dict[str, str] = {}
    by_milestone: dict[str, list[str]] = defaultdict(list)
    records = [_Record(r) for r in event.get("Records", [])]
    if records:  # one invocation, one batch: continue the first record's correlation id
        adopt_correlation_id(records[0])
    org_of: dict[str, str] = {}
    for record in records:
        got = _accept(record)
        if got is None:
            failures.add(record.message_id)
        else:
            # Stale or repeated versions still go through the sync: an earlier attempt may have
            # updated the mirror and crashed before writing the calendars.
            milestone_id, org_of[milestone_id] = got
            by_milestone[milestone_id].append(record.message_id)
            accepted[record.message_id] = milestone_id
    if by_milestone:
        _fair_share(records, accepted, org_of, by_milestone)
    if by_milestone:
        unjudged = _judge_conflicts(list(by_milestone))
        failed_milestones, retry_after, error = _sync(list(by_milestone))
        throttled = {message_id for milestone_id in failed_milestones
                     for message_id in by_milestone.get(milestone_id, [])}
        failures |= throttled | {message_id for milestone_id in unjudged for message_id in by_milestone[milestone_id]}
        if retry_after is not None and throttled:
            _wait_for_budget(records, throttled, retry_after, failures)
        _explain(records, failures, accepted, retry_after, error, unjudged)
        used: dict[str, int] = defaultdict(int)
        for milestone_id in by_milestone:
            used[org_of[milestone_id]] += 1
        try:
            wiring.fair_share().record(used)
        except Exception:  # noqa: BLE001 - a missed count only makes the share estimate lower for a minute
            logger.exception("fair share use not recorded")
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in sorted(failures)]}
