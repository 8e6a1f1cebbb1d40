"""The reason a consumer gives for a failed SQS record (calsync.sqs_failures): pure classification, and
the record's body never reaches the log line (it carries customers' names and phones)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from calsync.cronofy import CronofyRateLimited
from calsync.messages import UserQueueMessage
from calsync.milestones import MilestoneMessage
from calsync.sqs_failures import classify, queue_name

USER_MESSAGES = TypeAdapter(UserQueueMessage)
MILESTONES = TypeAdapter(MilestoneMessage)
SECRET = "+1 555 0199 Ana Ruiz"


def failure(adapter: TypeAdapter, body: str) -> Exception:
    try:
        adapter.validate_json(body)
    except Exception as error:  # noqa: BLE001 - the error is the subject
        return error
    raise AssertionError(f"accepted: {body}")


def test_not_json_is_malformed_json():
    reason, details = classify(failure(USER_MESSAGES, "not json"))
    assert reason == "malformed_json" and details["error"]


def test_a_missing_field_is_named_without_the_message_type_in_front():
    body = {"type": "user.deactivated", "message_id": "m", "occurred_at": "2026-12-07T08:00:00Z", "org_id": "o"}
    reason, details = classify(failure(USER_MESSAGES, json.dumps(body)))
    assert reason == "schema_error" and details["fields"] == ["user_id"]
    assert details["errors"][0]["type"] == "missing"


def test_throttling_and_other_errors():
    assert classify(CronofyRateLimited("429", retry_after=3.0)) == ("throttled", {"retry_after": 3.0})
    reason, details = classify(RuntimeError("boom"))
    assert reason == "processing_failed" and details == {"error_type": "RuntimeError", "error": "boom"}


def test_the_queue_is_named_from_the_event_source_arn():
    assert queue_name("arn:aws:sqs:us-east-1:123456789012:calendar-sync-UserEventsQueue-AB12") == (
        "calendar-sync-UserEventsQueue-AB12")
    assert queue_name(None) == queue_name("") == "unknown"


@given(st.dictionaries(st.sampled_from(["type", "message_id", "occurred_at", "org_id", "milestone", "version"]),
                       st.one_of(st.just(SECRET), st.integers(), st.lists(st.just(SECRET), max_size=2),
                                 st.fixed_dictionaries({"name": st.just(SECRET)})), max_size=6),
       st.booleans())
def test_the_body_never_reaches_the_details(body, truncate):
    text = json.dumps({"type": "milestone.upserted", **body})
    if truncate:
        text = text[: len(text) // 2]  # broken JSON that still holds the secret
    try:
        MILESTONES.validate_json(text)
    except Exception as error:  # noqa: BLE001
        _, details = classify(error)
        assert SECRET not in json.dumps(details)
