"""Cronofy push notifications: POST /v1/webhooks/cronofy[/{channel_token}] (ARCHITECTURE §2, §7).

Verify, enqueue, answer. Cronofy wants a 2xx within about 5 s and retries anything else, so this
function never calls Cronofy and never syncs: the notification processor reads NotificationsQueue.

Checks, cheapest first, all before anything is enqueued:
  body over 64 KB -> 413; HMAC of the raw body bytes -> 401; not a JSON notification -> 400;
  `verification` or a type we do not know -> 200, ignored (Cronofy adds types over time);
  channel unknown, or the URL's channel token not the channel owner's -> 401;
  the same notification again within two days (a replay), or one whose `changes_since` is two days
  behind the newest accepted on its channel (stale) -> 200, dropped (one conditional write);
  otherwise one message on NotificationsQueue -> 202.
A refused notification is retried by Cronofy for up to a day, after which it closes the channel:
what should become of a channel that no connection owns any more.

Hand-written event parsing instead of the Powertools Event Handler (or its event data classes):
this function's cold start sits inside Cronofy's 5 s budget, and for one route and a three-field
payload they would add ~30 ms (~15 ms) to an import that is already boto3 + pydantic (measured the
way bench/cold_imports.py measures). For the same reason the connection service (requests, the
Cronofy client, KMS) is not imported: only the Store and one SQS client are built here.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from typing import Any, TypeIs

import boto3
from aws_lambda_powertools.logging import correlation_paths
from botocore.config import Config

from calsync.clock import iso, utcnow
from calsync.config import Settings, get_settings
from calsync.http_errors import ApiError
from calsync.observability import correlation_attributes, logger
from calsync.push_signature import SIGNATURE_HEADER, channel_token_valid, signature_valid
from calsync.store import Store

MAX_BODY_BYTES = 64 * 1024
QUEUED_TYPES = frozenset({"change", "profile_disconnected", "profile_initial_sync_completed"})
MAX_ID_LENGTH = 128
MESSAGE_TYPE = "cronofy.notification"
# Cronofy retries an unanswered notification for up to a day: a copy within two days is a replay.
REPLAY_WINDOW_SECONDS = 2 * 24 * 3600
# Notifications without changes_since (profile_disconnected, ...) repeat genuinely with the same body.
REPEAT_WINDOW_SECONDS = 600

# Fail fast and retry once inside Cronofy's budget rather than hang until the Lambda timeout.
_AWS_CONFIG = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "max_attempts": 2})

_dependencies: tuple[Settings, Store, Any] | None = None
_clock = time.time  # seconds; replaced in tests that let time pass


def _store_and_queue() -> tuple[Settings, Store, Any]:
    """The table and the queue client, built once per container (again if the settings are reloaded,
    as `calsync.wiring.reset()` does between local stacks)."""
    global _dependencies
    settings = get_settings()
    if _dependencies is None or _dependencies[0] is not settings:
        session = boto3.session.Session()
        store = Store(session.client("dynamodb", config=_AWS_CONFIG), settings.table_name)
        _dependencies = (settings, store, session.client("sqs", config=_AWS_CONFIG))
    return _dependencies


def _answer(status: int, payload: dict) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(payload)}


def _refuse(status: int, code: str, message: str, **log_keys) -> dict:
    logger.warning("cronofy notification refused", extra={"reason": code, **log_keys})
    return _answer(status, ApiError(status, code, message).body())


def _raw_body(event: dict) -> bytes | None:
    """The bytes Cronofy sent (the HMAC covers exactly these); None if the body is not decodable."""
    body = event.get("body") or ""
    try:
        if event.get("isBase64Encoded"):
            return base64.b64decode(body, validate=True)
        return body.encode("utf-8")
    except (binascii.Error, ValueError, TypeError, AttributeError):
        return None


def _notification(raw: bytes) -> dict | None:
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    notification = payload.get("notification") if isinstance(payload, dict) else None
    if not isinstance(notification, dict) or not isinstance(notification.get("type"), str):
        return None
    return payload


def _short_string(value: object) -> TypeIs[str]:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH


def notification_job(kind: str, channel_id: str, changes_since: str | None, user_id: str, org_id: str) -> dict:
    """The NotificationsQueue message for the notification processor (asyncapi/asyncapi.json)."""
    return {
        "type": MESSAGE_TYPE,
        "notification_type": kind,
        "channel_id": channel_id,
        "user_id": user_id,
        "org_id": org_id,
        "changes_since": changes_since,
        "received_at": iso(utcnow()),
        "message_id": str(uuid.uuid4()),
    }


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
def lambda_handler(event: dict, context) -> dict:
    # Far over the limit in any encoding (base64 grows by 4/3): refused without decoding it.
    if len(str(event.get("body") or "")) > 2 * MAX_BODY_BYTES:
        return _refuse(413, "body_too_large", f"notifications are at most {MAX_BODY_BYTES} bytes")
    raw = _raw_body(event)
    if raw is None:
        return _refuse(400, "invalid_body", "the body is not readable")
    if len(raw) > MAX_BODY_BYTES:
        return _refuse(413, "body_too_large", f"notifications are at most {MAX_BODY_BYTES} bytes", size=len(raw))

    settings = get_settings()
    client_secret, signing_key = settings.secrets()
    headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
    if not signature_valid(headers.get(SIGNATURE_HEADER), raw, [client_secret]):
        return _refuse(401, "invalid_signature", "the Cronofy-HMAC-SHA256 signature does not match the body")

    payload = _notification(raw)
    if payload is None:
        return _refuse(400, "invalid_notification", "the body is not a Cronofy notification")
    notification = payload["notification"]
    kind = notification["type"]
    if kind not in QUEUED_TYPES:
        # `verification` follows channel creation and only needs a 2xx; unknown types are ignored.
        logger.info("cronofy notification ignored", extra={"notification_type": kind[:MAX_ID_LENGTH]})
        return _answer(200, {"status": "ignored"})

    channel = payload.get("channel")
    channel_id = channel.get("channel_id") if isinstance(channel, dict) else None
    changes_since = notification.get("changes_since")
    if not _short_string(channel_id) or not (changes_since is None or _short_string(changes_since)):
        return _refuse(400, "invalid_notification", "the notification has no valid channel_id or changes_since")

    _, store, sqs = _store_and_queue()
    owner = store.channel_owner(channel_id)
    presented = (event.get("pathParameters") or {}).get("channel_token")
    # One answer for an unknown channel and a wrong token: the caller learns nothing about channels.
    if owner is None:
        return _refuse(401, "invalid_channel", "the notification does not match this callback URL",
                       cause="unknown_channel", channel_id=channel_id, notification_type=kind)
    user_id, org_id = owner
    if not channel_token_valid(signing_key, user_id, presented):
        return _refuse(401, "invalid_channel", "the notification does not match this callback URL",
                       cause="channel_token_mismatch" if presented else "channel_token_missing",
                       channel_id=channel_id, notification_type=kind)

    return _accept_and_queue(settings, store, sqs, kind, channel_id, changes_since, user_id, org_id)


def _accept_and_queue(settings: Settings, store: Store, sqs: Any, kind: str, channel_id: str,
                      changes_since: str | None, user_id: str, org_id: str) -> dict:
    """A verified notification for a known channel: dropped if it is a replay or stale, else queued."""
    if not settings.notifications_queue_url:
        raise RuntimeError("NOTIFICATIONS_QUEUE_URL is not set")
    # A signed notification carries no nonce, so a captured one can be replayed: each copy would cost
    # Cronofy requests. The same (channel, type, changes_since) is accepted once per window, and one far
    # behind the newest accepted on its channel is stale; both are answered 200 and dropped here.
    window = REPLAY_WINDOW_SECONDS if changes_since else REPEAT_WINDOW_SECONDS
    verdict = store.accept_notification(channel_id, kind, changes_since, _clock(), window, REPLAY_WINDOW_SECONDS)
    if verdict != "new":
        logger.info("cronofy notification dropped", extra={
            "reason": verdict, "notification_type": kind, "channel_id": channel_id, "user_id": user_id})
        return _answer(200, {"status": verdict})
    message = notification_job(kind, channel_id, changes_since, user_id, org_id)
    try:
        sqs.send_message(QueueUrl=settings.notifications_queue_url, MessageBody=json.dumps(message),
                         MessageAttributes=correlation_attributes())
    except Exception:
        store.forget_notification(channel_id, kind, changes_since)  # Cronofy's retry must not be a "duplicate"
        raise
    logger.info("cronofy notification queued", extra={
        "notification_type": kind, "channel_id": channel_id, "user_id": user_id,
        "message_id": message["message_id"]})
    return _answer(202, {"status": "queued"})
