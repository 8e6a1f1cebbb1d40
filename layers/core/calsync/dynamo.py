"""The table as the repositories use it: one DynamoDB client and table name, items in plain Python
values, and the few ways of reading and writing that every repository shares (one pagination helper,
one conditional-write helper, batches of the sizes DynamoDB allows).

Nothing outside the repositories (calsync.store, calsync.enterprise_store, calsync.repositories)
uses this module: the rest of the core sees repository methods only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from calsync.errors import ConflictError

BATCH_GET_LIMIT = 100
BATCH_WRITE_LIMIT = 25
ITEM_SIZE_LIMIT = 400 * 1024  # DynamoDB's largest item, counted as item_size counts

_ser = TypeSerializer()
_de = TypeDeserializer()


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB's typed form of `values` (None values are left out)."""
    return {k: _ser.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


def attribute_size(value: dict[str, Any]) -> int:
    """The bytes DynamoDB counts for one typed value (AttributeValue), its name not included: strings and
    binaries their length (UTF-8), a number 1 byte per two significant digits plus 1, a boolean or null 1,
    a list or map 3 bytes plus 1 byte and the size of each element (a map's keys count as names), a set
    the size of its elements. (developer guide, "Item sizes and formats"; what the 400 KB limit counts.)"""
    (kind, raw), = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "B":
        return len(raw)
    if kind == "N":
        return _number_size(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(v.encode()) for v in raw)
    if kind == "NS":
        return sum(_number_size(v) for v in raw)
    if kind == "BS":
        return sum(len(v) for v in raw)
    if kind == "L":
        return 3 + sum(1 + attribute_size(v) for v in raw)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + attribute_size(v) for k, v in raw.items())
    raise ValueError(f"not a DynamoDB value: {kind}")


def _number_size(raw: str) -> int:
    digits = raw.lstrip("-+").split("e")[0].split("E")[0].replace(".", "").strip("0")
    return (len(digits) + 1) // 2 + 1


def item_size(item: dict[str, Any]) -> int:
    """The size DynamoDB counts for a typed item against ITEM_SIZE_LIMIT: each attribute's name (UTF-8)
    plus its value (attribute_size)."""
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def without_keys(values: dict[str, Any], *names: str) -> dict[str, Any]:
    """`values` without the table's own attributes (`pk`, `sk` and any index keys named)."""
    return {k: v for k, v in values.items() if k not in ("pk", "sk", *names)}


class Table:
    def __init__(self, dynamodb_client, table_name: str):
        self.client = dynamodb_client
        self.name = table_name

    # ---- single items ------------------------------------------------------------------------

    def get(self, key: dict[str, str], consistent: bool = True, **extra: Any) -> dict[str, Any] | None:
        """The item under `key` (plain values), or None."""
        kwargs: dict[str, Any] = {"TableName": self.name, "Key": to_item(key), **extra}
        if consistent:
            kwargs["ConsistentRead"] = True
        item = self.client.get_item(**kwargs).get("Item")
        return from_item(item) if item else None

    def put(self, values: dict[str, Any], **extra: Any) -> None:
        """Write an item (plain values); `extra` are further PutItem arguments, e.g. a condition that
        must hold (its failure is raised)."""
        self.client.put_item(TableName=self.name, Item=to_item(values), **extra)

    def delete(self, key: dict[str, str]) -> None:
        self.client.delete_item(TableName=self.name, Key=to_item(key))

    def write_if(self, operation: str, **kwargs: Any) -> dict[str, Any] | None:
        """A conditional write (`put_item`, `update_item` or `delete_item` with a ConditionExpression):
        its response, or None when the condition failed. The one way a repository learns it lost a
        race or found the item in another state."""
        try:
            return getattr(self.client, operation)(TableName=self.name, **kwargs)
        except self.client.exceptions.ConditionalCheckFailedException:
            return None

    def conditional_failure(self, operation: str, **kwargs: Any) -> dict[str, Any] | None:
        """Like write_if, the other way round: None when the write was made, else the failed check's
        response (with `Item` when ReturnValuesOnConditionCheckFailure asked for it)."""
        try:
            getattr(self.client, operation)(TableName=self.name, **kwargs)
        except self.client.exceptions.ConditionalCheckFailedException as error:
            return error.response
        return None

    # ---- transactions ------------------------------------------------------------------------

    def transact(self, items: list[dict[str, Any]]) -> list[str | None] | None:
        """Write `items` (TransactWriteItems entries, TableName added) in one transaction: None when it
        was applied, else the cancellation reason code of each item (None where it had none)."""
        entries = [{op: {"TableName": self.name, **spec} for op, spec in item.items()} for item in items]
        try:
            self.client.transact_write_items(TransactItems=entries)
        except self.client.exceptions.TransactionCanceledException as error:
            return [r.get("Code") for r in error.response.get("CancellationReasons", [])]
        return None

    def transact_or_conflict(self, items: list[dict[str, Any]], message: str) -> None:
        """One transaction whose conditions must hold; ConflictError(message) when one did not."""
        if self.transact(items) is not None:
            raise ConflictError(message)

    # ---- queries -----------------------------------------------------------------------------

    def query_pages(self, max_items: int | None = None, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every page of a Query (following LastEvaluatedKey); `kwargs` are the Query's arguments but
        TableName, with ExpressionAttributeValues in plain values. With `max_items`, each page asks for
        only as many items as are still wanted, and the pages stop when that many were read."""
        kwargs = {"TableName": self.name, **kwargs}
        if "ExpressionAttributeValues" in kwargs:
            kwargs["ExpressionAttributeValues"] = to_item(kwargs["ExpressionAttributeValues"])
        read = 0
        while max_items is None or read < max_items:
            if max_items is not None:
                kwargs["Limit"] = max_items - read
            resp = self.client.query(**kwargs)
            read += len(resp.get("Items", []))
            yield resp
            if "LastEvaluatedKey" not in resp:
                return
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def query_items(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """The items (plain values) of every page of a Query (arguments as for query_pages)."""
        for resp in self.query_pages(**kwargs):
            yield from (from_item(i) for i in resp.get("Items", []))

    def query_count(self, **kwargs: Any) -> int:
        """How many items a Query matches (Select COUNT: no items are returned)."""
        return sum(resp.get("Count", 0) for resp in self.query_pages(Select="COUNT", **kwargs))

    def first(self, **kwargs: Any) -> dict[str, Any] | None:
        """The first item a Query finds (one request, Limit 1), or None."""
        return next(self.query_items(max_items=1, **kwargs), None)

    # ---- batches -----------------------------------------------------------------------------

    def batch_get(self, keys: list[dict[str, str]]) -> list[dict[str, Any]]:
        """The items found under `keys` (consistent reads, plain values), BATCH_GET_LIMIT keys a request."""
        items: list[dict[str, Any]] = []
        for i in range(0, len(keys), BATCH_GET_LIMIT):
            request = {self.name: {"Keys": [to_item(k) for k in keys[i:i + BATCH_GET_LIMIT]],
                                   "ConsistentRead": True}}
            while request:
                resp = self.client.batch_get_item(RequestItems=request)
                items.extend(from_item(i) for i in resp.get("Responses", {}).get(self.name, []))
                request = resp.get("UnprocessedKeys") or {}
        return items

    def batch_write(self, puts: Sequence[dict[str, Any]] = (), deletes: Sequence[dict[str, str]] = ()) -> None:
        """Put these items and delete these keys, BATCH_WRITE_LIMIT a request (unprocessed ones again)."""
        requests = [{"PutRequest": {"Item": to_item(p)}} for p in puts]
        requests += [{"DeleteRequest": {"Key": to_item(k)}} for k in deletes]
        self.write_requests(requests)

    def write_requests(self, requests: list[dict[str, Any]]) -> None:
        """BatchWriteItem requests in the typed form, in order, BATCH_WRITE_LIMIT a request."""
        for i in range(0, len(requests), BATCH_WRITE_LIMIT):
            pending = {self.name: requests[i:i + BATCH_WRITE_LIMIT]}
            while pending:
                pending = self.client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


class Repository:
    """What every repository holds: the table it reads and writes."""

    def __init__(self, dynamodb_client, table_name: str):
        self.table = Table(dynamodb_client, table_name)


def retry_on_conflict(read: Callable[[], Any], change: Callable[[Any], Any], save: Callable[[Any], Any],
                      attempts: int) -> Any:
    """Optimistic concurrency: read, change, save, again from a fresh read when the save raised
    ConflictError; None when there is nothing to read or every attempt lost a race. A change that
    answers None has nothing to do: what was read is returned and nothing is saved."""
    for _ in range(attempts):
        current = read()
        if current is None:
            return None
        changed = change(current)
        if changed is None:
            return current
        try:
            return save(changed)
        except ConflictError:
            continue
    return None
