"""moto's DynamoDB, one request at a time, as the real service is consistent per request.

moto's in-process DynamoDB is not thread-safe: `transact_write_items` deep-copies a table to roll back
on failure while another thread writes to it, and fails with "dictionary changed size during
iteration". The local stack runs every function on several threads (the router, the SQS pump, Step
Functions), so that artefact failed a member callback now and then (bench/enterprise_connect.py) and
had to be told apart from real failures. DynamoDB requests are serialized here; they are quick, call
no other service, and nothing else waits on them. Applied by the local stack only.
"""

from __future__ import annotations

import threading
from typing import Any

_LOCK = threading.RLock()


def serialize_dynamodb() -> None:
    """Make moto answer DynamoDB requests one at a time (idempotent)."""
    from moto.core.botocore_stubber import BotocoreStubber

    if getattr(BotocoreStubber, "_dynamodb_serialized", False):
        return
    original = BotocoreStubber.process_request

    def process_request(self: Any, request: Any) -> Any:
        if "//dynamodb." not in str(request.url):
            return original(self, request)
        with _LOCK:
            return original(self, request)

    BotocoreStubber.process_request = process_request  # type: ignore[method-assign]
    BotocoreStubber._dynamodb_serialized = True  # type: ignore[attr-defined]
