"""In-memory stand-ins for the SQS and Step Functions clients, for the capacity benchmark
(bench/scale.py), where time is virtual and moto's SQS (a receive per poll) and its Step Functions
executor (real-time threads and sleeps) would make a simulated week too slow or wrong.

`MemorySQS` implements the low-level calls the service and the local stack make (create_queue,
get_queue_url, get_queue_attributes, send_message, receive_message, delete_message,
change_message_visibility) on `time.time()` (so a time-machine traveller moves it), with redrive to a
dead-letter queue after maxReceiveCount. The benchmark plays Lambda's event source mapping over
`take_batch()` / `settle()`.

`MemoryStepFunctions` records `start_execution` calls; the benchmark runs them (bench/scale.py
`BackfillRunner`, which follows statemachines/backfill.asl.json: plan -> Map over chunks with
MaxConcurrency 2 and the Retry policies -> finalize; Catch -> fail) in virtual time.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

REGION = "us-east-1"
ACCOUNT = "123456789012"


def _client_error(code: str, operation: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}},
                       operation)


@dataclass
class Message:
    message_id: str
    body: str
    attributes: dict
    sent_at: float
    visible_at: float
    receive_count: int = 0
    receipt: str | None = None
    first_received_at: float | None = None
    entry: int = 0  # the queue's current `due` entry for this message (older entries are stale)


@dataclass
class Queue:
    name: str
    url: str
    arn: str
    visibility_timeout: float = 30.0
    dlq_arn: str | None = None
    max_receive: int | None = None
    messages: dict[str, Message] = field(default_factory=dict)  # message id -> message (insertion order)
    # (visible_at, entry, message id), a heap: the next message to become visible is at the top, so a receive
    # or a poll costs O(log n), not O(queue depth) (at 20,000 users the morning's queues hold thousands).
    # An entry whose message was deleted or made visible at another time since is stale and dropped lazily.
    due: list = field(default_factory=list)
    _entries: itertools.count = field(default_factory=itertools.count)
    sent: int = 0
    moved_to_dlq: int = 0

    def schedule(self, m: Message) -> None:
        """`m` becomes visible at m.visible_at (a send, a receive, a visibility change)."""
        m.entry = seq = next(self._entries)
        heapq.heappush(self.due, (m.visible_at, seq, m.message_id))

    def top(self) -> Message | None:
        """The message that becomes visible first (stale entries dropped on the way)."""
        due = self.due
        while due:
            _, seq, mid = due[0]
            m = self.messages.get(mid)
            if m is not None and m.entry == seq:
                return m
            heapq.heappop(due)
        return None

    def visible_count(self, now: float, at_most: int) -> int:
        """How many messages are visible now, counting at most `at_most`."""
        taken, n = [], 0
        while n < at_most:
            m = self.top()
            if m is None or m.visible_at > now:
                break
            taken.append(heapq.heappop(self.due))
            n += 1
        for entry in taken:
            heapq.heappush(self.due, entry)
        return n


class MemorySQS:
    class exceptions:  # noqa: N801 - boto3's attribute name
        QueueDoesNotExist = ClientError
        ReceiptHandleIsInvalid = ClientError

    def __init__(self):
        self._lock = threading.RLock()
        self.queues: dict[str, Queue] = {}  # url -> queue
        self._receipts: dict[str, tuple[str, str]] = {}  # receipt -> (url, message id)
        self._ids = itertools.count(1)
        self.calls: dict[str, int] = {}

    def _count(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1

    def _queue(self, url: str, op: str) -> Queue:
        q = self.queues.get(url)
        if q is None:
            raise _client_error("AWS.SimpleQueueService.NonExistentQueue", op, "The specified queue does not exist")
        return q

    def by_arn(self, arn: str) -> Queue:
        return next(q for q in self.queues.values() if q.arn == arn)

    # ---- boto3 surface ----------------------------------------------------------------------------------

    def create_queue(self, QueueName: str, Attributes: dict | None = None, **_):  # noqa: N803
        with self._lock:
            url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{QueueName}"
            attrs = Attributes or {}
            q = Queue(QueueName, url, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{QueueName}",
                      float(attrs.get("VisibilityTimeout", 30)))
            if attrs.get("RedrivePolicy"):
                policy = json.loads(attrs["RedrivePolicy"])
                q.dlq_arn, q.max_receive = policy["deadLetterTargetArn"], int(policy["maxReceiveCount"])
            self.queues.setdefault(url, q)
            return {"QueueUrl": url}

    def set_visibility_timeout(self, url: str, seconds: float) -> None:
        self.queues[url].visibility_timeout = float(seconds)

    def get_queue_url(self, QueueName: str, QueueOwnerAWSAccountId: str | None = None):  # noqa: N803
        with self._lock:
            for q in self.queues.values():
                if q.name == QueueName:
                    return {"QueueUrl": q.url}
            raise _client_error("AWS.SimpleQueueService.NonExistentQueue", "GetQueueUrl", "no such queue")

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str] | None = None):  # noqa: N803
        with self._lock:
            q = self._queue(QueueUrl, "GetQueueAttributes")
            now = time.time()
            visible = sum(1 for m in q.messages.values() if m.visible_at <= now)
            return {"Attributes": {"QueueArn": q.arn, "ApproximateNumberOfMessages": str(visible),
                                   "ApproximateNumberOfMessagesNotVisible": str(len(q.messages) - visible),
                                   "VisibilityTimeout": str(int(q.visibility_timeout))}}

    def send_message(self, QueueUrl: str, MessageBody: str, MessageAttributes: dict | None = None,  # noqa: N803
                     DelaySeconds: int = 0, **_):
        with self._lock:
            self._count("SendMessage")
            q = self._queue(QueueUrl, "SendMessage")
            now = time.time()
            mid = str(uuid.UUID(int=next(self._ids)))
            m = q.messages[mid] = Message(mid, MessageBody, dict(MessageAttributes or {}), now, now + DelaySeconds)
            q.schedule(m)
            q.sent += 1
            return {"MessageId": mid, "MD5OfMessageBody": hashlib.md5(MessageBody.encode(),
                                                                      usedforsecurity=False).hexdigest()}

    def send_message_batch(self, QueueUrl: str, Entries: list[dict]):  # noqa: N803
        with self._lock:
            ok = []
            for e in Entries:
                sent = self.send_message(QueueUrl, e["MessageBody"], e.get("MessageAttributes"),
                                         e.get("DelaySeconds", 0))
                ok.append({"Id": e["Id"], "MessageId": sent["MessageId"], "MD5OfMessageBody": sent["MD5OfMessageBody"]})
            return {"Successful": ok, "Failed": []}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict]):  # noqa: N803
        with self._lock:
            for e in Entries:
                self.delete_message(QueueUrl, e["ReceiptHandle"])
            return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict]):  # noqa: N803
        with self._lock:
            ok, failed = [], []
            for e in Entries:
                try:
                    self.change_message_visibility(QueueUrl, e["ReceiptHandle"], e["VisibilityTimeout"])
                    ok.append({"Id": e["Id"]})
                except ClientError:
                    failed.append({"Id": e["Id"], "Code": "ReceiptHandleIsInvalid", "SenderFault": True})
            return {"Successful": ok, "Failed": failed}

    def receive_message(self, QueueUrl: str, MaxNumberOfMessages: int = 1, VisibilityTimeout: int | None = None,  # noqa: N803
                        **_):
        with self._lock:
            self._count("ReceiveMessage")
            q = self._queue(QueueUrl, "ReceiveMessage")
            batch = self._receive(q, MaxNumberOfMessages, VisibilityTimeout)
            return {"Messages": [{"MessageId": m.message_id, "ReceiptHandle": m.receipt, "Body": m.body,
                                  "MD5OfBody": hashlib.md5(m.body.encode(), usedforsecurity=False).hexdigest(),
                                  "Attributes": {"ApproximateReceiveCount": str(m.receive_count),
                                                 "SentTimestamp": str(int(m.sent_at * 1000))},
                                  "MessageAttributes": m.attributes} for m in batch]} if batch else {}

    def delete_message(self, QueueUrl: str, ReceiptHandle: str):  # noqa: N803
        with self._lock:
            self._count("DeleteMessage")
            found = self._receipts.pop(ReceiptHandle, None)
            if found:
                self.queues[found[0]].messages.pop(found[1], None)
            return {}

    def change_message_visibility(self, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int):  # noqa: N803
        with self._lock:
            self._count("ChangeMessageVisibility")
            found = self._receipts.get(ReceiptHandle)
            if not found or found[1] not in self.queues[found[0]].messages:
                raise _client_error("ReceiptHandleIsInvalid", "ChangeMessageVisibility", "invalid receipt handle")
            q = self.queues[found[0]]
            m = q.messages[found[1]]
            m.visible_at = time.time() + VisibilityTimeout
            q.schedule(m)
            return {}

    # ---- for the event source mapping ------------------------------------------------------------------

    def _receive(self, q: Queue, n: int, visibility: float | None) -> list[Message]:
        """Up to `n` visible messages, the longest visible first (SQS promises no order)."""
        now = time.time()
        out: list[Message] = []
        while len(out) < n:
            m = q.top()
            if m is None or m.visible_at > now:
                break
            heapq.heappop(q.due)
            if q.max_receive is not None and m.receive_count >= q.max_receive:
                del q.messages[m.message_id]  # SQS moves it to the DLQ on the next receive
                dlq = self.by_arn(q.dlq_arn)
                m.receive_count, m.receipt = 0, None
                dlq.messages[m.message_id] = m
                dlq.schedule(m)
                q.moved_to_dlq += 1
                continue
            m.receive_count += 1
            if m.first_received_at is None:
                m.first_received_at = now
            if m.receipt:
                self._receipts.pop(m.receipt, None)
            m.receipt = f"rh-{next(self._ids)}"
            self._receipts[m.receipt] = (q.url, m.message_id)
            m.visible_at = now + (q.visibility_timeout if visibility is None else visibility)
            q.schedule(m)
            out.append(m)
        return out

    def take_batch(self, url: str, size: int, window: float) -> list[Message]:
        """What Lambda's event source mapping hands the function now: up to `size` visible messages,
        once `size` are waiting or the oldest visible one has waited `window` seconds."""
        with self._lock:
            q = self.queues[url]
            now = time.time()
            first = q.top()
            if first is None or first.visible_at > now:
                return []
            # a message has been waiting since it became visible (visible_at >= sent_at: a delay or a receive
            # only moves it later); the top of the heap has waited longest
            if window > 0 and now - max(first.sent_at, first.visible_at) < window - 1e-9 \
                    and q.visible_count(now, size) < size:
                return []
            return self._receive(q, size, None)

    def next_deadline(self, url: str, window: float) -> float | None:
        """The earliest virtual time at which take_batch() could hand something over."""
        with self._lock:
            m = self.queues[url].top()
            if m is None:
                return None
            t = max(m.sent_at, m.visible_at) + window if window > 0 else m.visible_at
            return max(t, m.visible_at)

    def depth(self, url: str) -> int:
        with self._lock:
            return len(self.queues[url].messages)


class MemoryStepFunctions:
    def __init__(self):
        self.machines: dict[str, dict] = {}
        self.started: list[dict] = []  # executions waiting for the benchmark to run them
        self.executions: list[dict] = []
        self._lock = threading.Lock()

    def create_state_machine(self, name: str, definition: str, roleArn: str, **_):  # noqa: N803
        arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"
        self.machines[arn] = {"name": name, "definition": json.loads(definition)}
        return {"stateMachineArn": arn}

    def start_execution(self, stateMachineArn: str, name: str | None = None, input: str = "{}", **_):  # noqa: N803, A002
        with self._lock:
            arn = f"{stateMachineArn.replace(':stateMachine:', ':execution:')}:{name or uuid.uuid4().hex}"
            execution = {"executionArn": arn, "stateMachineArn": stateMachineArn, "input": json.loads(input),
                         "startDate": time.time(), "status": "RUNNING"}
            self.started.append(execution)
            self.executions.append(execution)
            return {"executionArn": arn, "startDate": execution["startDate"]}

    def take_started(self) -> list[dict]:
        with self._lock:
            out, self.started = self.started, []
            return out

    def list_executions(self, stateMachineArn: str, statusFilter: str | None = None, **_):  # noqa: N803
        return {"executions": [e for e in self.executions if e["stateMachineArn"] == stateMachineArn
                               and (statusFilter is None or e["status"] == statusFilter)]}


class MemoryKMS:
    """Encrypt/Decrypt with an encryption context that must match (as KMS checks it); not cryptography,
    a stand-in so the benchmark runs without moto's request interception (it matches every HTTP
    request of the process, the emulator's included, against moto's URL patterns)."""

    class exceptions:  # noqa: N801
        InvalidCiphertextException = ClientError

    def __init__(self):
        self.keys: dict[str, str] = {}
        self._blobs: dict[bytes, tuple[str, dict, bytes]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.calls: dict[str, int] = {}

    def create_key(self, Description: str = "", **_):  # noqa: N803
        key_id = str(uuid.UUID(int=next(self._ids)))
        self.keys[key_id] = Description
        return {"KeyMetadata": {"KeyId": key_id, "Arn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}"}}

    def encrypt(self, KeyId: str, Plaintext: bytes, EncryptionContext: dict | None = None, **_):  # noqa: N803
        with self._lock:
            self.calls["Encrypt"] = self.calls.get("Encrypt", 0) + 1
            blob = f"kms-{next(self._ids)}-".encode() + hashlib.sha256(Plaintext).digest()[:8]
            self._blobs[blob] = (KeyId, dict(EncryptionContext or {}), bytes(Plaintext))
            return {"CiphertextBlob": blob, "KeyId": KeyId}

    def decrypt(self, CiphertextBlob: bytes, EncryptionContext: dict | None = None, **_):  # noqa: N803
        with self._lock:
            self.calls["Decrypt"] = self.calls.get("Decrypt", 0) + 1
            found = self._blobs.get(bytes(CiphertextBlob))
            if found is None or found[1] != dict(EncryptionContext or {}):
                raise _client_error("InvalidCiphertextException", "Decrypt", "")
            return {"Plaintext": found[2], "KeyId": found[0]}


class NoMock:
    """Put in place of DevStack's moto mock when every AWS client the process uses is in memory."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass
