"""moto's DynamoDB held to the real item size limit, counted as DynamoDB counts.

moto refuses an item over 405,000 bytes by a count of its own (attribute names and values, no overhead
for maps and lists, numbers by their text). DynamoDB's limit is 400 KB (409,600 bytes) counted as its
developer guide says (calsync.dynamo.item_size: 3 bytes a map or list and 1 byte an element): an item of
a few thousand small map entries passes moto and is refused by DynamoDB. The local stack applies this so
that a write too large for DynamoDB fails here too (with moto's own "Item size has exceeded the maximum
allowed size" ValidationException, on PutItem, UpdateItem, BatchWriteItem and TransactWriteItems).
"""

from __future__ import annotations

from typing import Any

from calsync.dynamo import ITEM_SIZE_LIMIT, attribute_size


def _typed(value: Any) -> dict[str, Any]:
    """moto's value (a DynamoType, or the wire form inside one) in the wire form."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    if isinstance(value, DynamoType):
        kind, raw = value.type, value.value
    else:
        (kind, raw), = value.items()
    if kind == "L":
        return {"L": [_typed(v) for v in raw]}
    if kind == "M":
        return {"M": {k: _typed(v) for k, v in raw.items()}}
    return {kind: raw}


def enforce_item_size() -> None:
    """Make moto count item sizes as DynamoDB does, against 400 KB (idempotent)."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import LimitedSizeDict

    if getattr(LimitedSizeDict, "_dynamodb_count", False):
        return

    def __setitem__(self: dict, key: str, value: Any) -> None:  # noqa: N807 - the method replaced
        attributes = {**self, key: value}
        size = sum(len(name.encode()) + attribute_size(_typed(v)) for name, v in attributes.items())
        if size > ITEM_SIZE_LIMIT:
            raise ItemSizeTooLarge
        dict.__setitem__(self, key, value)

    LimitedSizeDict.__setitem__ = __setitem__  # type: ignore[method-assign,assignment]
    LimitedSizeDict._dynamodb_count = True  # type: ignore[attr-defined]
