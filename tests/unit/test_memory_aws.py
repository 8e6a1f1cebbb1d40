"""The benchmark's in-memory SQS (localdev/memory_aws.py) keeps Lambda's event source mapping semantics in
virtual time: batching window, visibility timeout after a failure, ChangeMessageVisibility, redrive."""

from __future__ import annotations

import json

import time_machine

from localdev.memory_aws import MemoryKMS, MemorySQS


def make():
    sqs = MemorySQS()
    dlq = sqs.create_queue(QueueName="q-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "180", "RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": arn, "maxReceiveCount": "2"})})["QueueUrl"]
    return sqs, url, dlq


def test_batching_window_and_full_batches():
    with time_machine.travel(1_000_000, tick=False) as t:
        sqs, url, _ = make()
        sqs.send_message(QueueUrl=url, MessageBody="a")
        assert sqs.take_batch(url, 10, 2) == []  # waits for the window
        assert sqs.next_deadline(url, 2) == 1_000_002
        t.shift(2)
        assert [m.body for m in sqs.take_batch(url, 10, 2)] == ["a"]
        for i in range(12):
            sqs.send_message(QueueUrl=url, MessageBody=str(i))
        assert len(sqs.take_batch(url, 10, 2)) == 10  # a full batch goes at once
        assert sqs.take_batch(url, 10, 2) == []


def test_failed_messages_return_after_the_visibility_timeout_or_their_hand_back_then_the_dlq():
    with time_machine.travel(1_000_000, tick=False) as t:
        sqs, url, dlq = make()
        sqs.send_message(QueueUrl=url, MessageBody="x")
        (m,) = sqs.take_batch(url, 10, 0)
        assert sqs.take_batch(url, 10, 0) == []
        t.shift(180)
        (m,) = sqs.take_batch(url, 10, 0)  # failed: back after the queue's timeout
        assert m.receive_count == 2
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m.receipt, VisibilityTimeout=30)
        t.shift(30)
        assert sqs.take_batch(url, 10, 0) == []  # received twice: moved to the DLQ
        assert sqs.depth(url) == 0 and sqs.depth(dlq) == 1


def test_kms_stand_in_binds_the_encryption_context():
    kms = MemoryKMS()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key, Plaintext=b"secret", EncryptionContext={"user_id": "a"})["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"user_id": "a"})["Plaintext"] == b"secret"
    try:
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"user_id": "b"})
        raise AssertionError("decrypted under another user's context")
    except kms.exceptions.InvalidCiphertextException:
        pass
