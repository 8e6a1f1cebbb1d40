"""asyncapi/asyncapi.json is what the message models and template.yaml generate, and it agrees with the
contract: every message of shared/design/messages.schema.json is on the queue ARCHITECTURE §3/§4 puts it
on, in the direction it travels, with the same required fields. (`make validate` checks the document
against the AsyncAPI 3 specification with @asyncapi/parser.)"""

import json
from typing import Any

from jsonschema import Draft7Validator, Draft202012Validator

from calsync.messages import ConnectionChanged, MilestoneRemovedOnCalendar, MilestoneRescheduledOnCalendar
from calsync.models import ConnectionState
from calsync.publisher import Publisher
from functions.webhook_intake.app import notification_job
from localdev import asyncapi
from tests.schema import SCHEMA, assert_valid_message

# ARCHITECTURE §3 (from the core platform, received here) and §4 (sent here, to the core platform).
CONTRACT = {
    "milestone.upserted": ("MilestoneEventsQueue", "receive"),
    "milestone.deleted": ("MilestoneEventsQueue", "receive"),
    "user.deactivated": ("UserEventsQueue", "receive"),
    "milestone.rescheduled_on_calendar": ("CalendarChangesQueue", "send"),
    "milestone.removed_on_calendar": ("CalendarChangesQueue", "send"),
    "calendar.connection_changed": ("CalendarChangesQueue", "send"),
    "calendar.conflict_detected": ("CalendarChangesQueue", "send"),
    "calendar.conflict_resolved": ("CalendarChangesQueue", "send"),
}
SHARED = json.loads(SCHEMA.read_text())


def _document() -> dict[str, Any]:
    return json.loads(asyncapi.DOCUMENT.read_text())


def _resolve(root: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _shared_message(shared: dict[str, Any], definition: dict[str, Any]) -> dict[str, Any]:
    """A message of the shared schema with its envelope (`allOf`) folded in."""
    required, properties = set(definition.get("required", [])), dict(definition.get("properties", {}))
    for part in definition.get("allOf", []):
        base = _resolve(shared, part)
        required |= set(base.get("required", []))
        properties = base.get("properties", {}) | properties
    return {"required": required, "properties": properties}


def _agree(shared: dict[str, Any], ours: dict[str, Any], root: dict[str, Any], path: str) -> None:
    """Same required fields, every property of the contract documented; the same for nested objects and
    enumerations."""
    assert set(ours.get("required", [])) == set(shared["required"]), path
    for name, expected in shared["properties"].items():
        assert name in ours["properties"], f"{path}.{name} is not documented"
        documented = _resolve(root, ours["properties"][name])
        nested = _resolve(SHARED, expected)
        if "required" in nested:
            _agree({"required": nested["required"], "properties": nested.get("properties", {})}, documented,
                   root, f"{path}.{name}")
        if "enum" in expected:
            assert set(documented["enum"]) == set(expected["enum"]), f"{path}.{name}"
        if "const" in expected:
            assert documented["const"] == expected["const"], f"{path}.{name}"


def _messages_on(document: dict[str, Any], channel: str) -> dict[str, dict[str, Any]]:
    """Message type -> payload schema, for the messages of a channel."""
    found = {}
    for ref in document["channels"][channel]["messages"].values():
        message = _resolve(document, ref)
        payload = _resolve(document, message["payload"])
        found[payload["properties"]["type"]["const"]] = payload
    return found


def _validator(document: dict[str, Any], schema_name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]})


def test_committed_document_matches_the_models_and_the_template():
    generated = asyncapi.render(asyncapi.build())
    committed = asyncapi.DOCUMENT.read_text() if asyncapi.DOCUMENT.is_file() else ""
    assert committed == generated, "asyncapi/asyncapi.json is out of date: run `make asyncapi` and commit it"


def test_every_contract_message_is_on_its_queue_in_its_direction_with_the_same_fields():
    document = _document()
    contract_types = {_resolve(SHARED, ref)["properties"]["type"]["const"] for ref in SHARED["oneOf"]}
    assert contract_types == set(CONTRACT)
    for ref in SHARED["oneOf"]:
        shared = _shared_message(SHARED, _resolve(SHARED, ref))
        kind = shared["properties"]["type"]["const"]
        channel, action = CONTRACT[kind]
        payload = _messages_on(document, channel).get(kind)
        assert payload is not None, f"{kind} is not on {channel}"
        _agree(shared, payload, document, kind)
        operation = document["operations"][f"{action}{channel}"]
        assert operation["action"] == action
        assert any(_resolve(document, m)["name"] == kind for m in operation["messages"]), (kind, action)


def test_the_core_platform_sees_only_the_contract_queues():
    """In from the core platform: milestone and user events; out: calendar changes. The rest is ours."""
    document = _document()
    actions = {(op["action"], op["channel"]["$ref"].removeprefix("#/channels/"))
               for op in document["operations"].values()}
    assert {queue for action, queue in actions if action == "receive" and ("send", queue) not in actions} == {
        "MilestoneEventsQueue", "UserEventsQueue"}
    assert {queue for action, queue in actions if action == "send" and ("receive", queue) not in actions} == {
        "CalendarChangesQueue"}
    for channel in document["channels"]:
        if channel.endswith("DLQ"):
            source = channel.removesuffix("DLQ") + "Queue"
            assert _messages_on(document, channel) == _messages_on(document, source)
            redrive = document["channels"][source]["bindings"]["sqs"]["queue"]["redrivePolicy"]
            assert redrive["deadLetterQueue"]["name"] == channel


def test_messages_the_service_sends_match_the_document():
    document = _document()
    sent: list[tuple[str, str]] = []

    class Sqs:
        def send_message(self, QueueUrl, MessageBody, MessageAttributes):  # noqa: N803 - boto3's names
            sent.append((QueueUrl, MessageBody))

    publisher = Publisher(Sqs(), "changes", "cleanup")
    publisher.connection_changed("org_1", "u_1", ConnectionState.NEEDS_REAUTH, "invalid_grant")
    publisher.connection_changed("org_1", "u_1", ConnectionState.CONNECTED, None)
    publisher.calendar_change(MilestoneRescheduledOnCalendar(
        org_id="org_1", milestone_id="ms_1", user_id="u_1", based_on_version=3, start="2026-12-01T15:00:00Z",
        end="2026-12-01T17:00:00Z", all_day=False, timezone="America/Los_Angeles"))
    publisher.calendar_change(MilestoneRemovedOnCalendar(org_id="org_1", milestone_id="ms_1", user_id="u_1",
                                                         based_on_version=3))
    publisher.request_disconnect("org_1", "u_1", "conn_1")
    schema_of = {"connection.disconnect_requested": "DisconnectRequested", **{
        model.model_fields["type"].default: model.__name__
        for model in (ConnectionChanged, MilestoneRescheduledOnCalendar, MilestoneRemovedOnCalendar)}}
    for queue, body in sent:
        message = json.loads(body)
        errors = list(_validator(document, schema_of[message["type"]]).iter_errors(message))
        assert not errors, (message, [e.message for e in errors])
        if queue == "changes":
            assert_valid_message(message)

    job = notification_job("change", "chn_1", "2026-11-24T10:00:00Z", "u_1", "org_1")
    assert not list(_validator(document, "CronofyNotificationJob").iter_errors(job))
    documented = document["components"]["schemas"]["CronofyNotificationJob"]
    assert set(job) == set(documented["properties"]) == set(documented["required"])


def test_message_examples_match_their_payloads_and_the_contract():
    document = _document()
    for name, message in document["components"]["messages"].items():
        assert message["examples"], name
        for example in message["examples"]:
            errors = list(_validator(document, name).iter_errors(example["payload"]))
            assert not errors, (name, [e.message for e in errors])
            if message["name"] in CONTRACT:
                assert_valid_message(example["payload"])


def test_payload_schemas_are_json_schema_the_asyncapi_schema_object_accepts():
    document = _document()
    assert document["asyncapi"] == "3.0.0"
    for schema in document["components"]["schemas"].values():
        Draft7Validator.check_schema(schema)  # the AsyncAPI Schema Object is a superset of draft 7
        Draft202012Validator.check_schema(schema)
