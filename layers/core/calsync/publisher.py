"""Sends the service's messages to SQS: calendar changes and connection states to the core platform's
CalendarChangesQueue, disconnect jobs to our own cleanup queue. (Split from `messages`, which holds
only the message models, so a module that reads messages does not also get an SQS sender.)"""

from __future__ import annotations

import uuid

from pydantic import BaseModel

from calsync.messages import ConnectionChanged, DisconnectRequested
from calsync.models import ConnectionState, iso, utcnow
from calsync.observability import correlation_attributes


class Publisher:
    """Sends messages to SQS queues (the core platform's CalendarChangesQueue, our cleanup queue)."""

    def __init__(self, sqs_client, calendar_changes_queue_url: str | None, cleanup_queue_url: str | None):
        self._sqs = sqs_client
        self._changes_url = calendar_changes_queue_url
        self._cleanup_url = cleanup_queue_url

    def _send(self, queue_url: str | None, body: BaseModel) -> None:
        if not queue_url:
            raise RuntimeError(f"no queue configured for {type(body).__name__}")
        self._sqs.send_message(QueueUrl=queue_url, MessageBody=body.model_dump_json(exclude_none=True),
                               MessageAttributes=correlation_attributes())

    def connection_changed(self, org_id: str, user_id: str, state: ConnectionState, reason: str | None) -> None:
        self._send(self._changes_url, ConnectionChanged(org_id=org_id, user_id=user_id, state=state, reason=reason))

    def calendar_change(self, message: BaseModel) -> None:
        """A reschedule or removal made on the user's calendar, for the core platform."""
        self._send(self._changes_url, message)

    def request_disconnect(self, org_id: str, user_id: str, connection_id: str | None = None) -> None:
        self._send(
            self._cleanup_url,
            DisconnectRequested(
                type="connection.disconnect_requested",
                message_id=str(uuid.uuid4()),
                occurred_at=iso(utcnow()),
                org_id=org_id,
                user_id=user_id,
                connection_id=connection_id,
            ),
        )
