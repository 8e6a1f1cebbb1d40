"""The AsyncAPI document of the service's queues (asyncapi/asyncapi.json), generated from the message
models and template.yaml: what openapi/openapi.json is for the routes, this is for the SQS messages.

    python -m localdev.asyncapi            # write asyncapi/asyncapi.json (make asyncapi)
    python -m localdev.asyncapi --check    # exit 1 when the committed document is out of date

One channel per SQS queue of template.yaml (its logical id), dead-letter queues included, with the
queue's settings as an SQS binding. Which messages travel on which queue is declared below (CHANNELS);
their payloads are the pydantic models the handlers validate (messages we receive, validation-mode
schema) or the publisher serializes (messages we send, serialization-mode schema with
`exclude_none`: a field is absent rather than null). The operations are the service's own, read
from template.yaml: `receive` where a function has an SQS event on the queue, `send` where a
function outside the queue's consumers may send to it. A consumer re-sending a throttled message
to its own queue is a retry, not a producer (the `calsync-requeues` header counts those copies).
The core platform's side (it sends milestone and user events, it reads CalendarChangesQueue) is the
mirror image of these operations.
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema
from pydantic_core import PydanticUndefined

from calsync.messages import (
    ConflictDetected,
    ConflictResolved,
    ConnectionChanged,
    DisconnectRequested,
    MilestoneRemovedOnCalendar,
    MilestoneRescheduledOnCalendar,
    UserDeactivated,
)
from calsync.milestones import MilestoneDeleted, MilestoneUpserted
from calsync.models import ConnectionState
from calsync.observability import CORRELATION_ATTRIBUTE
from calsync.sqs_handback import REQUEUE_ATTRIBUTE
from functions.notification_processor.app import NotificationJob
from localdev import template
from localdev.openapi import render, write_or_check

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "asyncapi" / "asyncapi.json"
SCHEMA_PREFIX = "#/components/schemas/"
SQS_BINDING_VERSION = "0.2.0"

DESCRIPTION = """\
The SQS queues between SolarNexus's core platform and Calendar Sync, and the service's own work queues.

**In.** The core platform sends full-state milestone messages to `MilestoneEventsQueue` (a per-milestone
`version` that only grows; a stale or repeated message changes nothing) and `user.deactivated` to
`UserEventsQueue`. Standard queues: delivery is at least once and in any order.

**Out.** Calendar Sync sends what users did on their calendars (`milestone.rescheduled_on_calendar`,
`milestone.removed_on_calendar`), connection states (`calendar.connection_changed`) and conflicts between
an assignee's own calendar and a milestone assigned to them (`calendar.conflict_detected`, then
`calendar.conflict_resolved` with why it ended) to `CalendarChangesQueue`. The core applies a reschedule
only if the milestone's version still equals `based_on_version`; otherwise SolarNexus wins and the next
upsert puts the calendar back.

**Internal.** `NotificationsQueue` (Cronofy push notifications accepted by the webhook) and `CleanupQueue`
(disconnect jobs). Every queue has a dead-letter queue (`...DLQ`) that receives a message after
`maxReceiveCount` failed receives; `make replay-dlq QUEUE=...` puts them back after a fix.

Bodies are JSON; times are ISO-8601 UTC (`...Z`). Messages sent by this service carry the SQS message
attribute `correlation_id` (the request or message that caused them), shown here as a header.
"""


class CronofyNotificationJob(NotificationJob):
    """A Cronofy push notification the webhook accepted (signature, channel and token checked, not a
    replay), for the notification processor: one Read Events per user and batch."""

    # The intake writes every field; the processor's model also takes jobs without the optional ones.
    type: Literal["cronofy.notification"]  # narrowed for the document
    notification_type: str = Field(description="`change`, `profile_disconnected` or "
                                               "`profile_initial_sync_completed`")
    org_id: str
    changes_since: str | None = Field(description="From the notification; null when it has none")
    message_id: str
    received_at: str = Field(description="When the webhook accepted it (not read by the processor, which uses "
                                         "the SQS SentTimestamp)")

# "in": from the core platform, received here (validation-mode schemas); "out": sent here, read by the core
# platform; "internal": sent and received here. Both of the latter are what this service serializes.
Direction = Literal["in", "out", "internal"]
EXPECTED_OPERATIONS: dict[Direction, tuple[bool, bool]] = {  # (receive, send) by this service
    "in": (True, False), "out": (False, True), "internal": (True, True)}


@dataclass(frozen=True)
class Channel:
    queue: str  # logical id in template.yaml
    messages: tuple[type[BaseModel], ...]
    direction: Direction
    description: str


CHANNELS = (
    Channel("MilestoneEventsQueue", (MilestoneUpserted, MilestoneDeleted), "in",
            "Milestone changes from the core platform (ARCHITECTURE §3), read by the milestone push function "
            "in batches of up to 100; a malformed message fails alone and ends in the DLQ."),
    Channel("UserEventsQueue", (UserDeactivated,), "in",
            "User lifecycle events from the core platform (ARCHITECTURE §3): a deactivated user's calendar "
            "connection is removed with every SolarNexus event on it."),
    Channel("CalendarChangesQueue", (MilestoneRescheduledOnCalendar, MilestoneRemovedOnCalendar, ConnectionChanged,
                                     ConflictDetected, ConflictResolved),
            "out", "To the core platform (ARCHITECTURE §4): changes users made to SolarNexus events on their "
                   "calendars, connection state changes (the scheduler's sync icon), and conflicts between an "
                   "assignee's own calendar and a milestone assigned to them."),
    Channel("NotificationsQueue", (CronofyNotificationJob,), "internal",
            "Internal: the webhook intake hands each accepted Cronofy notification to the notification "
            "processor, which reads the user's changes from Cronofy."),
    Channel("CleanupQueue", (DisconnectRequested,), "internal",
            "Internal: disconnect jobs (the user's DELETE /v1/calendar/connection, an administrator ending "
            "Enterprise Connect, a job the reconciler finds lost), run by the deactivation cleanup function."),
)

_ENVELOPE = {"message_id": "0b6f3c1e-8a0d-4c55-9d8e-3f1f6a2b7c10", "occurred_at": "2026-11-24T10:00:00Z",
             "org_id": "org_1"}
_MILESTONE = {"milestone_id": "ms_123", "version": 7, "project_id": "prj_9", "name": "Site Survey",
              "assignee_user_ids": ["u_1", "u_2"], "start": "2026-12-01T15:00:00Z", "end": "2026-12-01T17:00:00Z",
              "all_day": False, "timezone": "America/Los_Angeles", "status": "scheduled",
              "customer": {"name": "Ana Ruiz", "phone": "+1 555 0100", "email": "ana@example.com",
                           "address": "12 Main St, Fresno, CA"},
              "notes": "Gate code 4411", "url": "https://app.solarnexus.com/projects/prj_9"}
_CHANGE = _ENVELOPE | {"milestone_id": "ms_123", "user_id": "u_1", "based_on_version": 7}
# Message -> (summary, an example built from the model)
EXAMPLES: dict[type[BaseModel], tuple[str, BaseModel]] = {
    MilestoneUpserted: (
        "A milestone's full state; `start: null` or a status other than `scheduled` means on no calendar",
        MilestoneUpserted(type="milestone.upserted", **_ENVELOPE, milestone=_MILESTONE)),
    MilestoneDeleted: (
        "A milestone was deleted: its events leave every calendar",
        MilestoneDeleted(type="milestone.deleted", **_ENVELOPE, milestone_id="ms_123", version=8)),
    UserDeactivated: (
        "A user was deactivated: their calendar connection is removed",
        UserDeactivated(type="user.deactivated", **_ENVELOPE, user_id="u_1")),
    MilestoneRescheduledOnCalendar: (
        "The user moved a SolarNexus event on their calendar; applied only if the milestone is still at "
        "`based_on_version`",
        MilestoneRescheduledOnCalendar(**_CHANGE, start="2026-12-02T16:00:00Z", end="2026-12-02T18:00:00Z",
                                       all_day=False, timezone="America/Los_Angeles")),
    MilestoneRemovedOnCalendar: (
        "The user deleted a SolarNexus event on their calendar; the milestone stays, the event is not re-created "
        "until the milestone changes again",
        MilestoneRemovedOnCalendar(**_CHANGE)),
    ConnectionChanged: (
        "A user's calendar connection changed state (e.g. `needs_reauth`), with the reason",
        ConnectionChanged(**_ENVELOPE, user_id="u_1", state=ConnectionState.NEEDS_REAUTH, reason="invalid_grant")),
    ConflictDetected: (
        "The assignee's own busy time now overlaps a scheduled milestone assigned to them (once per milestone "
        "and user while the overlap lasts)",
        ConflictDetected(**_ENVELOPE, user_id="u_1", milestone_id="ms_123", milestone_version=7,
                         conflict_id="cfl_ms_123_u_1_1", overlap={"start": "2026-12-01T15:30:00Z",
                                                                  "end": "2026-12-01T16:30:00Z"})),
    ConflictResolved: (
        "A conflict sent earlier has ended, with why",
        ConflictResolved(**_ENVELOPE, user_id="u_1", milestone_id="ms_123", conflict_id="cfl_ms_123_u_1_1",
                         why="busy_time_gone")),
    CronofyNotificationJob: (
        "An accepted Cronofy push notification for one user's channel",
        CronofyNotificationJob(type="cronofy.notification", notification_type="change", channel_id="chn_1",
                               user_id="u_1", org_id="org_1", changes_since="2026-11-24T09:58:00Z",
                               message_id="5d1c2b7e-1f0a-4d8e-8c3b-2a9e6f4d1b20", received_at="2026-11-24T10:00:01Z")),
    DisconnectRequested: (
        "Disconnect a user's calendar: remove every SolarNexus event, close channels, revoke, delete tokens",
        DisconnectRequested(type="connection.disconnect_requested", **_ENVELOPE, user_id="u_1",
                            connection_id="conn_1")),
}

MESSAGE_HEADERS = {
    "type": "object",
    "description": "SQS message attributes",
    "properties": {
        CORRELATION_ATTRIBUTE: {
            "type": "string",
            "description": "String attribute: the correlation id of the request or message that caused this one "
                           "(sent by this service; a consumer without it starts one from the SQS message id)"},
        REQUEUE_ATTRIBUTE: {
            "type": "string", "pattern": "^[0-9]+$",
            "description": "Number attribute: how often a throttled message was re-sent to its own queue as a "
                           "delayed copy (so waiting for Cronofy's rate budget does not count towards "
                           "maxReceiveCount)"},
    },
}


class _SentJsonSchema(GenerateJsonSchema):
    """Serialization-mode schemas of what the publisher sends (`model_dump_json(exclude_none=True)`): a
    field with a non-None default is always present, so it is required; one defaulting to None may be
    absent."""

    def field_is_required(self, field: Any, total: bool) -> bool:
        if self.mode != "serialization":
            return super().field_is_required(field, total)
        schema = field["schema"]
        return schema["type"] != "default" or schema.get("default", PydanticUndefined) is not None


def _version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _schemas() -> dict[str, Any]:
    mode: dict[Direction, JsonSchemaMode] = {"in": "validation", "out": "serialization", "internal": "serialization"}
    models = [(model, mode[channel.direction]) for channel in CHANNELS for model in channel.messages]
    _, schemas = models_json_schema(models, ref_template=SCHEMA_PREFIX + "{model}",
                                    schema_generator=_SentJsonSchema)
    return dict(sorted(schemas["$defs"].items()))


def _message_type(model: type[BaseModel]) -> str:
    (value,) = get_args(model.model_fields["type"].annotation)
    return value


def _message(model: type[BaseModel]) -> dict[str, Any]:
    """The message: its example is a model instance, so it is valid by construction."""
    summary, example = EXAMPLES[model]
    message = {
        "name": _message_type(model),
        "title": model.__name__,
        "summary": summary,
        "contentType": "application/json",
        "headers": {"$ref": "#/components/schemas/MessageAttributes"},
        "payload": {"$ref": SCHEMA_PREFIX + model.__name__},
        "correlationId": {"$ref": "#/components/correlationIds/correlationId"},
        "examples": [{"name": _message_type(model).replace(".", "_"),
                      "payload": example.model_dump(mode="json", exclude_none=True)}],
    }
    doc = " ".join((model.__doc__ or "").split())
    if doc:
        message["description"] = doc
    return message


def _sqs_binding(queue: str, properties: dict[str, Any]) -> dict[str, Any]:
    settings = {"name": queue, "fifoQueue": False}
    if "VisibilityTimeout" in properties:
        settings["visibilityTimeout"] = properties["VisibilityTimeout"]
    if "MessageRetentionPeriod" in properties:
        settings["messageRetentionPeriod"] = properties["MessageRetentionPeriod"]
    redrive = properties.get("RedrivePolicy")
    if redrive:
        settings["redrivePolicy"] = {"deadLetterQueue": {"name": redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]},
                                     "maxReceiveCount": redrive["maxReceiveCount"]}
    return {"sqs": {"queue": settings, "bindingVersion": SQS_BINDING_VERSION}}


def _senders(cfn: dict[str, Any], functions: dict[str, template.Function]) -> dict[str, list[str]]:
    """Queue logical id -> functions allowed to send to it, other than its own consumers' requeues."""
    found: dict[str, list[str]] = {}
    for logical_id, function in functions.items():
        for policy in cfn["Resources"][logical_id]["Properties"].get("Policies") or []:
            if isinstance(policy, dict) and "SQSSendMessagePolicy" in policy:
                queue = policy["SQSSendMessagePolicy"]["QueueName"]["Fn::GetAtt"][0]
                if queue not in function.queues:
                    found.setdefault(queue, []).append(logical_id)
    return found


def _channel(channel: Channel, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "address": None,
        "title": channel.queue,
        "description": channel.description + " The queue's name is generated by CloudFormation (stack resource "
                                             f"`{channel.queue}`).",
        "messages": {model.__name__: {"$ref": f"#/components/messages/{model.__name__}"}
                     for model in channel.messages},
        "bindings": _sqs_binding(channel.queue, properties),
    }


def _dead_letter_channel(channel: Channel, dlq: str, properties: dict[str, Any]) -> dict[str, Any]:
    days = properties["MessageRetentionPeriod"] // 86400
    return {
        "address": None,
        "title": dlq,
        "description": f"Dead-letter queue of {channel.queue}: its messages after they failed "
                       f"{properties['maxReceiveCount']} receives, kept {days} days (an alarm fires on the first). "
                       f"`make replay-dlq QUEUE={channel.queue.removesuffix('Queue')}` moves them back after a fix.",
        "messages": {model.__name__: {"$ref": f"#/components/messages/{model.__name__}"}
                     for model in channel.messages},
    }


def _operation(action: str, channel: Channel, functions: list[str]) -> dict[str, Any]:
    verb = "Received by" if action == "receive" else "Sent by"
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel.queue}"},
        "summary": f"{verb} {', '.join(sorted(functions))}",
        "messages": [{"$ref": f"#/channels/{channel.queue}/messages/{model.__name__}"}
                     for model in channel.messages],
    }


def build() -> dict[str, Any]:
    """The document, from the message models and template.yaml."""
    cfn = template.load()
    queues = template.queues(cfn)
    functions = template.functions(cfn)
    declared = {channel.queue for channel in CHANNELS}
    dead_letter = {props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]: queue
                   for queue, props in queues.items() if "RedrivePolicy" in props}
    if set(queues) != declared | set(dead_letter):
        raise ValueError(f"template.yaml's queues and CHANNELS differ: template.yaml {sorted(queues)}, "
                         f"CHANNELS {sorted(declared)} and their dead-letter queues")

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    senders = _senders(cfn, functions)
    for channel in CHANNELS:
        properties = queues[channel.queue]
        channels[channel.queue] = _channel(channel, properties)
        dlq = properties["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        channels[dlq] = _dead_letter_channel(channel, dlq, properties["RedrivePolicy"] | queues[dlq])
        consumers = [f.logical_id for f in functions.values() if channel.queue in f.queues]
        if consumers:
            operations[f"receive{channel.queue}"] = _operation("receive", channel, consumers)
        if senders.get(channel.queue):
            operations[f"send{channel.queue}"] = _operation("send", channel, senders[channel.queue])
        if (bool(consumers), bool(senders.get(channel.queue))) != EXPECTED_OPERATIONS[channel.direction]:
            raise ValueError(f"{channel.queue}: direction {channel.direction!r} does not match template.yaml "
                             f"(consumers {consumers}, senders {senders.get(channel.queue)})")

    messages = {model.__name__: _message(model) for channel in CHANNELS for model in channel.messages}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "SolarNexus Calendar Sync queues", "version": _version(), "description": DESCRIPTION},
        "defaultContentType": "application/json",
        "servers": {
            "sqs": {"host": "sqs.{region}.amazonaws.com", "protocol": "sqs",
                    "description": "Amazon SQS in the stack's region (standard queues, SSE-SQS encryption)",
                    "variables": {"region": {"default": "us-east-1"}}},
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": {"MessageAttributes": MESSAGE_HEADERS} | _schemas(),
            "messages": messages,
            "correlationIds": {"correlationId": {
                "description": "Follows a piece of work across functions and queues",
                "location": f"$message.header#/{CORRELATION_ATTRIBUTE}"}},
        },
    }


def main(argv: list[str]) -> int:
    return write_or_check(DOCUMENT, render(build()), "asyncapi", argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
