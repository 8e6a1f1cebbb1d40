"""Every SQS consumer explains each record it fails with one structured ERROR line (message id, queue,
reason), so the operator paged by a DLQ alarm finds the dead letter in the logs; the rest of the batch
proceeds (issue 22, item 3). Through the real handlers on the local stack."""

from __future__ import annotations

from calsync.clock import utcnow
from calsync.milestones import event_id_for
from tests.helpers import in_days, iso, managed_events, milestone

FAILED = "sqs record failed"


def failed_lines(service_logs) -> dict[str, list[dict]]:
    """The `sqs record failed` lines by message id."""
    out: dict[str, list[dict]] = {}
    for line in service_logs.lines():
        if line.get("message") == FAILED:
            out.setdefault(line["message_id"], []).append(line)
    return out


def run_batch(stack, function_id: str, queue_id: str, bodies: list) -> tuple[list[str], set[str]]:
    """One SQS batch through the real handler: the records' message ids, and those it reported failed."""
    event = stack.sqs_event(queue_id, bodies)
    result = stack.invoke(function_id, event)
    return ([r["messageId"] for r in event["Records"]],
            {f["itemIdentifier"] for f in result["batchItemFailures"]})


def assert_explained(service_logs, stack, queue_id: str, message_id: str, reason: str) -> dict:
    lines = failed_lines(service_logs).get(message_id, [])
    assert len(lines) == 1, lines  # one line per failed record, not zero, not several
    line = lines[0]
    assert line["level"] == "ERROR" and line["reason"] == reason
    assert line["queue"] == stack.queue_arns[queue_id].rsplit(":", 1)[-1]
    return line


def deactivation(**overrides) -> dict:
    body = {"type": "user.deactivated", "message_id": "m-1", "occurred_at": "2026-12-07T08:00:00Z",
            "org_id": "org_sunbright", "user_id": "u_nobody"}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def test_a_malformed_deactivation_is_logged_and_fails_alone(stack, miguel_cal, teammate, service_logs):
    ids, failed = run_batch(stack, "DeactivationCleanupFunction", "UserEventsQueue", [
        "not json", deactivation(user_id=None), deactivation(user_id="u_miguel", org_id="org_other"),
        deactivation(message_id="m-ok", user_id="u_miguel", occurred_at=iso(utcnow()))])
    assert failed == {ids[0], ids[1], ids[2]}
    assert "error" in assert_explained(service_logs, stack, "UserEventsQueue", ids[0], "malformed_json")
    schema = assert_explained(service_logs, stack, "UserEventsQueue", ids[1], "schema_error")
    assert schema["fields"] == ["user_id"]
    refused = assert_explained(service_logs, stack, "UserEventsQueue", ids[2], "refused")
    assert refused["error_type"] == "OrgMismatch" and "exception" not in refused  # refused on purpose: no trace
    # the rest of the batch went through: Miguel's deactivation disconnected him
    assert ids[3] not in failed_lines(service_logs)
    assert teammate["session"].get(stack.url("/v1/calendar/connection")).json()["state"] == "not_connected"


def test_a_malformed_disconnect_job_on_the_cleanup_queue_is_logged_and_fails_alone(stack, service_logs):
    job = {"type": "connection.disconnect_requested", "message_id": "m-2", "occurred_at": "2026-12-07T08:00:00Z",
           "org_id": "org_sunbright", "user_id": "u_nobody"}
    ids, failed = run_batch(stack, "DeactivationCleanupFunction", "CleanupQueue", [
        {**job, "occurred_at": "yesterday"}, "{", job])
    assert failed == {ids[0], ids[1]}
    assert assert_explained(service_logs, stack, "CleanupQueue", ids[0], "schema_error")["fields"] == ["occurred_at"]
    assert_explained(service_logs, stack, "CleanupQueue", ids[1], "malformed_json")


def test_a_malformed_milestone_message_is_logged_and_the_rest_is_written(stack, jane_cal, service_logs):
    good = milestone("ms_ok", 1, ["u_jane"], in_days(2))
    broken = milestone("ms_bad", 1, ["u_jane"], in_days(2))
    del broken["milestone"]["name"]
    ids, failed = run_batch(stack, "MilestonePushFunction", "MilestoneEventsQueue", ["[1, 2", broken, good])
    assert failed == {ids[0], ids[1]}
    assert_explained(service_logs, stack, "MilestoneEventsQueue", ids[0], "malformed_json")
    fields = assert_explained(service_logs, stack, "MilestoneEventsQueue", ids[1], "schema_error")["fields"]
    assert any(f.endswith("name") for f in fields), fields
    stack.settle()
    assert event_id_for("ms_ok") in managed_events(stack, jane_cal)  # the rest of the batch went through


def test_a_malformed_notification_job_is_logged_and_fails_alone(stack, jane_cal, service_logs):
    from calsync import wiring

    conn = wiring.store().get_connection("u_jane")
    job = {"type": "cronofy.notification", "notification_type": "change", "channel_id": conn.channel_id,
           "user_id": "u_jane", "org_id": "org_sunbright", "changes_since": "2026-12-07T08:00:00Z"}
    ids, failed = run_batch(stack, "NotificationProcessorFunction", "NotificationsQueue", [
        "not json", {k: v for k, v in job.items() if k != "user_id"}, job])
    assert failed == {ids[0], ids[1]}
    assert_explained(service_logs, stack, "NotificationsQueue", ids[0], "malformed_json")
    assert assert_explained(service_logs, stack, "NotificationsQueue", ids[1], "schema_error")["fields"] == ["user_id"]
    assert ids[2] not in failed_lines(service_logs)


def test_a_notification_that_cannot_be_processed_says_why(stack, jane_cal, service_logs):
    """Cronofy down for longer than the client's retries: each of the user's records fails with the reason."""
    from calsync import wiring

    conn = wiring.store().get_connection("u_jane")
    job = {"type": "cronofy.notification", "notification_type": "change", "channel_id": conn.channel_id,
           "user_id": "u_jane", "org_id": "org_sunbright", "changes_since": "2026-12-07T08:00:00Z"}
    stack.emulator.add_fault(path_prefix="/v1/events", status=500, count=None)
    try:
        ids, failed = run_batch(stack, "NotificationProcessorFunction", "NotificationsQueue", [job, job])
    finally:
        stack.emulator.clear_faults()
    assert failed == set(ids)
    for message_id in ids:
        line = assert_explained(service_logs, stack, "NotificationsQueue", message_id, "processing_failed")
        assert line["error_type"] and line["exception"]
