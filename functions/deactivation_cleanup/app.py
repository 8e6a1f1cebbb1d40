"""Connection cleanup on the user queue: `user.deactivated` from the core platform and the
service's own `connection.disconnect_requested`. Both remove every SolarNexus event from the
user's calendar, close the channel, revoke the authorization and delete the tokens.

Idempotent by design: a repeated message finds no connection and succeeds. A malformed message
fails alone (partial batch response), logged as one `sqs record failed` line with its message id,
queue and reason, and reaches the DLQ after the queue's maxReceiveCount.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import TypeAdapter

from calsync import wiring
from calsync.clock import parse_utc
from calsync.messages import UserDeactivated, UserQueueMessage
from calsync.observability import adopt_correlation_id, logger, metrics
from calsync.sqs_failures import explaining_failures
from calsync.sqs_handback import handing_back_when_throttled

# A batch whose every record failed is still a partial response (each one retried, then the DLQ), not a
# function error.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
_messages = TypeAdapter(UserQueueMessage)


def handle_record(record: SQSRecord) -> str:
    adopt_correlation_id(record)
    message = _messages.validate_json(record.body)
    service = wiring.connection_service()
    with logger.append_context_keys(user_id=message.user_id, message_id=message.message_id):
        if isinstance(message, UserDeactivated):
            # Only a connection that existed when the user was deactivated: a replay spares a later one.
            return service.cleanup(message.user_id, message.org_id, "user_deactivated",
                                   occurred_before=parse_utc(message.occurred_at))
        return service.cleanup(message.user_id, message.org_id, "disconnected",
                               connection_id=message.connection_id, only_if_disconnecting=True)


def _refused(error: BaseException) -> bool:
    """A message naming another org than the user's connection: refused on purpose (DLQ, alarm)."""
    from calsync.connections import OrgMismatch  # imported by the first record's wiring anyway: not at init

    return isinstance(error, OrgMismatch)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context) -> PartialItemFailureResponse:
    record_handler = explaining_failures(handing_back_when_throttled(handle_record), refused=_refused)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
