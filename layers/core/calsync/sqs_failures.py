"""One structured ERROR line for each SQS record a consumer fails, so the operator paged by a DLQ alarm
finds every dead letter in the logs by its SQS message id: which queue, and why.

    {"level": "ERROR", "message": "sqs record failed", "message_id": "...", "queue": "...-UserEventsQueue-...",
     "reason": "schema_error", "fields": ["user_id"], "errors": [{"field": "user_id", "type": "missing", ...}]}

Reasons: `malformed_json` (the body is not JSON), `schema_error` (JSON, but not a message we accept:
`fields` names what is wrong), `refused` (valid, but refused on purpose, e.g. another org's: `error`
says why), `throttled` (Cronofy's budget was spent and the record could not be put back for later) and
`processing_failed` (anything else: the error type and text, with the traceback). The body itself is
never logged: it may carry customers' names and phones, and a pydantic error's input value would repeat it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from calsync.cronofy import CronofyRateLimited
from calsync.observability import logger

MESSAGE = "sqs record failed"
MALFORMED_JSON = "malformed_json"
SCHEMA_ERROR = "schema_error"
REFUSED = "refused"
THROTTLED = "throttled"
PROCESSING_FAILED = "processing_failed"


def queue_name(event_source_arn: str | None) -> str:
    """The queue's name from a record's eventSourceARN (arn:aws:sqs:region:account:name)."""
    return (event_source_arn or "").rsplit(":", 1)[-1] or "unknown"


def _field(loc: tuple[Any, ...]) -> str:
    # A tagged union puts the tag first (`user.deactivated`): message types are dotted, field names never.
    parts = [str(p) for p in loc if not (isinstance(p, str) and "." in p)]
    return ".".join(parts) or "(body)"


def _without_input(detail: Any) -> str:
    """A pydantic error's message without the input it may quote (the value, or a union's unknown tag)."""
    message = str(detail["msg"])
    ctx = detail.get("ctx") or {}
    quoted = [detail.get("input"), ctx.get("tag") if detail["type"] == "union_tag_invalid" else None]
    for value in quoted:
        if isinstance(value, str | int | float) and not isinstance(value, bool) and str(value):
            message = message.replace(str(value), "(input)")
    return message


def classify(error: BaseException) -> tuple[str, dict[str, Any]]:
    """The reason a record failed with `error`, and the details that explain it (never the input)."""
    if isinstance(error, ValidationError):
        details = error.errors(include_url=False)  # input and context only to cut them out of the messages
        if any(d["type"] == "json_invalid" for d in details):
            return MALFORMED_JSON, {"error": _without_input(details[0])[:300]}
        errors = [{"field": _field(tuple(d["loc"])), "type": d["type"], "msg": _without_input(d)[:200]}
                  for d in details[:10]]
        return SCHEMA_ERROR, {"fields": sorted({e["field"] for e in errors}), "errors": errors}
    if isinstance(error, CronofyRateLimited):
        return THROTTLED, {"retry_after": error.retry_after}
    if isinstance(error, ValueError) and type(error).__name__ == "JSONDecodeError":
        return MALFORMED_JSON, {"error": str(error)[:300]}
    return PROCESSING_FAILED, {"error_type": type(error).__name__, "error": str(error)[:500]}


def log_failed_record(message_id: str | None, event_source_arn: str | None, reason: str | None = None,
                      exc: BaseException | None = None, **details: Any) -> None:
    """Log the one ERROR line for a failed record: by the exception `exc` (classified), or by an explicit
    `reason` (with `details`, e.g. `error="..."`)."""
    extra: dict[str, Any] = {"message_id": message_id, "queue": queue_name(event_source_arn)}
    exc_info: BaseException | None = None
    if exc is not None:
        classified, described = classify(exc)
        extra.update(described)
        reason = reason or classified
        if reason == PROCESSING_FAILED:
            exc_info = exc  # a bug or an outage: the traceback is what the operator needs
    extra["reason"] = reason or PROCESSING_FAILED
    extra.update(details)
    logger.error(MESSAGE, extra=extra, exc_info=exc_info)


def explaining_failures(record_handler, refused: Callable[[BaseException], bool] | None = None):
    """Wrap a Powertools record handler: a record that fails is logged (`log_failed_record`; reason
    `refused` where `refused(error)` says so), then fails."""

    def wrapped(record):
        try:
            return record_handler(record)
        except Exception as error:
            log_failed_record(record.message_id, record.event_source_arn,
                              REFUSED if refused is not None and refused(error) else None, exc=error)
            raise

    return wrapped
