"""The in-memory store: the real `calsync.store.Store` (and `BusyStore`) over the in-memory DynamoDB
table of localdev/memory_dynamodb.py, created from template.yaml's definition. Not a second
implementation of the store's rules: the same code as production, minus the network and moto (a
test's table costs microseconds). tests/contract/test_store_contract.py holds it to the same answers
as the store on moto."""

from __future__ import annotations

from functools import cache
from typing import Any

from calsync.store import BusyStore, Store
from localdev import template
from localdev.memory_dynamodb import MemoryDynamoDB

TABLE = "calsync-unit"


@cache
def table_definition() -> dict[str, Any]:
    return template.table_definition(template.load())[1]


def memory_table() -> MemoryDynamoDB:
    db = MemoryDynamoDB()
    db.create_table(TableName=TABLE, **table_definition())
    return db


def memory_store(db: MemoryDynamoDB | None = None) -> Store:
    return Store(db or memory_table(), TABLE)


def memory_busy_store(db: MemoryDynamoDB) -> BusyStore:
    return BusyStore(db, TABLE)
