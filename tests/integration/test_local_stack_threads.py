"""The local stack runs every function in one process on several threads: what it shares must hold."""

import threading

import boto3
from moto import mock_aws

from localdev.moto_threads import serialize_dynamodb


def test_moto_dynamodb_takes_transactions_and_writes_from_many_threads():
    """moto's transact_write_items deep-copies the table while other threads write to it ("dictionary
    changed size during iteration" about once in ten requests here); the local stack serializes
    DynamoDB requests (DevStack.start), so none fails."""
    serialize_dynamodb()
    with mock_aws():
        db = boto3.client("dynamodb", region_name="us-east-1")
        db.create_table(TableName="t", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
        errors: list[Exception] = []

        def run(kind: str, n: int) -> None:
            for i in range(150):
                item = {"pk": {"S": f"{kind}{n}-{i}"}}
                try:
                    if kind == "tx":
                        db.transact_write_items(TransactItems=[{"Put": {"TableName": "t", "Item": item}}])
                    else:
                        db.put_item(TableName="t", Item=item)
                except Exception as error:  # noqa: BLE001 - collected and asserted below
                    errors.append(error)

        threads = [threading.Thread(target=run, args=(kind, n)) for n in range(2) for kind in ("tx", "put")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert db.scan(TableName="t", Select="COUNT")["Count"] == 600
