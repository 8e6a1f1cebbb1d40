"""Lambda's SQS event source mappings, locally: receive a batch from each subscribed queue, invoke
the function with it, delete what succeeded (partial batch responses) and leave the rest to come
back (and, past maxReceiveCount, to its DLQ), as AWS does.

The pump is given the function to call (`invoke`) rather than the stack, so it knows nothing
above it; `DevStack.drain` decides when the queues are empty.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import boto3

from localdev import template
from localdev.provisioning import REGION, Resources

Invoke = Callable[[str, dict[str, Any]], Any]
_DEPTH_ATTRIBUTES = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                     "ApproximateNumberOfMessagesDelayed"]


def _record(queue_arn: str, message: dict[str, Any]) -> dict[str, Any]:
    """A received message as Lambda hands it to the function (camelCase attributes)."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {
            name: {"stringValue": a.get("StringValue"), "dataType": a.get("DataType", "String"),
                   "stringListValues": [], "binaryListValues": []}
            for name, a in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


class SqsPump:
    def __init__(self, functions: Mapping[str, template.Function], resources: Resources, invoke: Invoke):
        self.functions = functions
        self.resources = resources
        self.invoke = invoke
        self.error: Exception | None = None  # the last failed background round, for a test to look at
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def _subscriptions(self) -> list[tuple[str, str]]:
        return [(fid, queue_id) for fid, fn in self.functions.items() for queue_id in fn.queues]

    def send(self, queue_id: str, body: dict[str, Any] | str) -> None:
        sqs = boto3.client("sqs", region_name=REGION)
        sqs.send_message(QueueUrl=self.resources.queue_urls[queue_id],
                         MessageBody=body if isinstance(body, str) else json.dumps(body))

    def sqs_event(self, queue_id: str, bodies: list[dict[str, Any] | str]) -> dict[str, Any]:
        """One SQS batch as Lambda receives it, for invoking a function directly with chosen messages."""
        records = []
        for i, body in enumerate(bodies):
            text = body if isinstance(body, str) else json.dumps(body)
            records.append({
                "messageId": f"msg-{uuid.uuid4().hex[:8]}-{i}",
                "receiptHandle": f"handle-{i}",
                "body": text,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(text.encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": self.resources.queue_arns[queue_id],
                "awsRegion": REGION,
            })
        return {"Records": records}

    def pump_queue(self, function_id: str, queue_id: str) -> int:
        """One batch from `queue_id` to `function_id`; returns how many messages it held."""
        sqs = boto3.client("sqs", region_name=REGION)
        url = self.resources.queue_urls[queue_id]
        resp = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"],
                                   MessageAttributeNames=["All"])
        messages = resp.get("Messages", [])
        if not messages:
            return 0
        records = [_record(self.resources.queue_arns[queue_id], m) for m in messages]
        try:
            result = self.invoke(function_id, {"Records": records}) or {}
            failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
        except Exception:  # noqa: BLE001 - a crashed invocation returns the whole batch, as Lambda does
            failed = {r["messageId"] for r in records}
        for m in messages:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return len(messages)

    def pump(self) -> int:
        """One round over every subscribed queue; returns how many messages were delivered."""
        return sum(self.pump_queue(fid, queue_id) for fid, queue_id in self._subscriptions())

    def in_flight(self) -> int:
        """Messages on subscribed queues not delivered yet: invisible or delayed for now (handed back or
        requeued for later), or visible again since the last pump."""
        sqs = boto3.client("sqs", region_name=REGION)
        total = 0
        for _, queue_id in self._subscriptions():
            attrs = sqs.get_queue_attributes(QueueUrl=self.resources.queue_urls[queue_id],
                                             AttributeNames=_DEPTH_ATTRIBUTES)["Attributes"]
            total += int(attrs["ApproximateNumberOfMessagesNotVisible"])
            total += int(attrs.get("ApproximateNumberOfMessagesDelayed", 0))  # requeued for later
            # one that became visible (or ended its delay) since the last pump
            total += int(attrs.get("ApproximateNumberOfMessages", 0))
        return total

    def start(self, interval: float = 0.2) -> None:
        """Deliver batches in a background thread, as the event source mappings do."""
        if self._thread is not None:
            return
        self._stop = threading.Event()

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.pump()
                except Exception as error:  # noqa: BLE001 - a failed round is retried on the next tick
                    self.error = error

        self._thread = threading.Thread(target=loop, name="sqs-pump", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=30)
        self._thread = None

    def queue_messages(self, queue_id: str) -> list[dict[str, Any]]:
        """Read and delete every message on a queue (for queues no function consumes, e.g. the core
        platform's CalendarChangesQueue, and DLQs)."""
        sqs = boto3.client("sqs", region_name=REGION)
        url = self.resources.queue_urls[queue_id]
        found: list[dict[str, Any]] = []
        while True:
            batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return found
            for m in batch:
                try:
                    found.append(json.loads(m["Body"]))
                except ValueError:
                    found.append(m["Body"])  # poison messages reach DLQs as they were sent
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
