"""Powertools Logger and Metrics, created once; everything imports these objects."""

import os
import warnings

from aws_lambda_powertools import Logger, Metrics

# Many invocations have nothing to count (a webhook for an unknown type, a no-op cleanup): normal.
warnings.filterwarnings("ignore", message="No application metrics to publish")

SERVICE = os.getenv("POWERTOOLS_SERVICE_NAME") or "calendar-sync"

logger = Logger(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE") or "SolarNexus/CalendarSync")

CORRELATION_ATTRIBUTE = "correlation_id"


def correlation_attributes() -> dict:
    """SQS MessageAttributes carrying the current correlation id to the next function."""
    correlation_id = logger.get_correlation_id()
    if not correlation_id:
        return {}
    return {CORRELATION_ATTRIBUTE: {"DataType": "String", "StringValue": str(correlation_id)}}


def adopt_correlation_id(record) -> None:
    """Continue the correlation id an SQS record carries (from the function that sent it), or start
    one from the message id."""
    if isinstance(record, dict):  # a raw Lambda SQS record
        attributes, message_id = record.get("messageAttributes") or {}, record.get("messageId")
    else:
        attributes, message_id = getattr(record, "message_attributes", None) or {}, record.message_id
    value = None
    attribute = attributes.get(CORRELATION_ATTRIBUTE) if hasattr(attributes, "get") else None
    if attribute is not None:
        value = getattr(attribute, "string_value", None) or (attribute.get("stringValue") if isinstance(
            attribute, dict) else None)
    logger.set_correlation_id(value or message_id)
