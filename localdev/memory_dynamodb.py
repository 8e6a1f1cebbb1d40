"""An in-memory stand-in for boto3's low-level DynamoDB client, for benchmarks that moto makes too slow
(moto deep-copies the whole table for every TransactWriteItems item and sorts it for every Query).

    db = MemoryDynamoDB()
    db.create_table(TableName="t", **template.table_definition(template.load())[1])
    db.put_item(TableName="t", Item={"pk": {"S": "a"}, "sk": {"S": "b"}},
                ConditionExpression="attribute_not_exists(pk)")

It speaks the wire format ({"S": ...}, {"N": ...}) and implements the calls the service makes:
get_item, put_item, update_item, delete_item, query (base table and GSIs; KeyConditionExpression with
=, <, <=, >, >=, BETWEEN, begins_with; Limit, ExclusiveStartKey, ScanIndexForward, Select=COUNT,
FilterExpression, ProjectionExpression), scan, batch_get_item, batch_write_item, transact_write_items,
create_table / describe_table / delete_table. Expressions (condition, key condition, filter, update,
projection) go through one small generic parser, not string matching: comparisons = <> < <= > >=,
BETWEEN, IN, AND/OR/NOT, parentheses, attribute_exists, attribute_not_exists, attribute_type,
begins_with, contains, size; updates SET (with +/-, if_not_exists, list_append), ADD, REMOVE, DELETE;
ExpressionAttributeNames/Values; ReturnValues ALL_OLD/ALL_NEW/UPDATED_OLD/UPDATED_NEW.

Errors are botocore-shaped: `client.exceptions.ConditionalCheckFailedException`,
`TransactionCanceledException` (with CancellationReasons), `ValidationException`,
`ResourceNotFoundException` are subclasses of `botocore.exceptions.ClientError`.

Items are held to DynamoDB's 400 KB limit, counted as DynamoDB counts (calsync.dynamo.item_size:
names and values, 3 bytes a map or list and 1 an element): a larger item is a ValidationException
("Item size has exceeded the maximum allowed size"), and a batch or transaction holding one writes
nothing.

Every call holds one lock (the benchmark's notification thread calls in too), and items are copied
in and out, so callers never share state with the store. GSIs are eventually consistent in AWS; here
they are always current (ConsistentRead on a GSI is refused, as AWS does).
`tests/integration/test_memory_dynamodb_contract.py` runs the same tests against moto and this.
"""

from __future__ import annotations

import marshal
import re
import threading
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError
from sortedcontainers import SortedList

from calsync.dynamo import ITEM_SIZE_LIMIT, item_size

# ---- errors ---------------------------------------------------------------------------------------


class _Exceptions:
    class ConditionalCheckFailedException(ClientError):
        pass

    class TransactionCanceledException(ClientError):
        pass

    class ValidationException(ClientError):
        pass

    class ResourceNotFoundException(ClientError):
        pass

    class ResourceInUseException(ClientError):
        pass

    class ClientError(ClientError):
        pass


def _error(cls, operation: str, message: str, **extra) -> ClientError:
    response = {"Error": {"Code": cls.__name__, "Message": message},
                "ResponseMetadata": {"HTTPStatusCode": 400}}
    response.update(extra)
    return cls(response, operation)


def _check_size(item: dict, operation: str) -> dict:
    """`item`, when DynamoDB would store it (at most ITEM_SIZE_LIMIT bytes as it counts them)."""
    if item_size(item) > ITEM_SIZE_LIMIT:
        raise _error(_Exceptions.ValidationException, operation, "Item size has exceeded the maximum allowed size")
    return item


# ---- values ----------------------------------------------------------------------------------------


def _copy(value: dict) -> dict:
    (kind, raw), = value.items()
    if kind == "M":
        return {"M": {k: _copy(v) for k, v in raw.items()}}
    if kind == "L":
        return {"L": [_copy(v) for v in raw]}
    if kind in ("SS", "NS", "BS"):
        return {kind: list(raw)}
    return {kind: raw}


def _copy_item(item: dict) -> dict:
    """A deep copy (items go in and out by copy): marshal's C round trip, 2-3x faster than walking a nested
    item (a busy week's list of periods) in Python; a value marshal cannot hold is walked instead."""
    try:
        return marshal.loads(marshal.dumps(item))  # noqa: S302 - our own bytes, made on the line itself
    except ValueError:
        return {k: _copy(v) for k, v in item.items()}


def _plain(value: dict | None) -> Any:
    """A comparable Python value: S -> str, N -> Decimal, B -> bytes; None when absent."""
    if value is None:
        return None
    (kind, raw), = value.items()
    if kind == "N":
        return Decimal(raw)
    if kind == "B":
        return bytes(raw) if not isinstance(raw, str) else raw.encode()
    return raw


def _kind(value: dict | None) -> str | None:
    return None if value is None else next(iter(value))


def _number(d: Decimal) -> str:
    text = format(d.normalize(), "f") if d == d.to_integral_value() else str(d.normalize())
    return text


# ---- expression parsing -------------------------------------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:
    (?P<cmp><>|<=|>=|=|<|>)
  | (?P<punct>[(),+\-\[\]])
  | (?P<dot>\.)
  | (?P<value>:[A-Za-z0-9_]+)
  | (?P<name>\#[A-Za-z0-9_]+)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<int>\d+)
)""", re.VERBOSE)
_KEYWORDS = {"AND", "OR", "NOT", "BETWEEN", "IN", "SET", "ADD", "REMOVE", "DELETE"}
_FUNCTIONS = {"attribute_exists", "attribute_not_exists", "attribute_type", "begins_with", "contains", "size",
              "if_not_exists", "list_append"}


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot parse expression at {text[pos:]!r}")
        kind = m.lastgroup
        tok = m.group(kind)
        if kind == "word" and tok.upper() in _KEYWORDS:
            kind, tok = "kw", tok.upper()
        out.append((kind, tok))
        pos = m.end()
    return out


class _Parser:
    """Recursive descent over DynamoDB's expression grammar. Produces tuples:
    ("path", [segments]), ("value", ":v"), ("cmp", op, a, b), ("between", a, lo, hi), ("in", a, [b...]),
    ("and", a, b), ("or", a, b), ("not", a), ("fn", name, [args]), ("arith", op, a, b)."""

    def __init__(self, text: str, names: dict[str, str] | None):
        self.toks = _tokens(text)
        self.i = 0
        self.names = names or {}
        self.used_names: set[str] = set()

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def take(self, kind: str | None = None, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (kind and tok[0] != kind) or (value and tok[1] != value):
            raise ValueError(f"expected {value or kind}, found {tok}")
        self.i += 1
        return tok

    def at(self, kind: str, value: str | None = None) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == kind and (value is None or tok[1] == value)

    def done(self) -> bool:
        return self.i >= len(self.toks)

    # conditions
    def condition(self):
        node = self.conj()
        while self.at("kw", "OR"):
            self.take()
            node = ("or", node, self.conj())
        return node

    def conj(self):
        node = self.negation()
        while self.at("kw", "AND"):
            self.take()
            node = ("and", node, self.negation())
        return node

    def negation(self):
        if self.at("kw", "NOT"):
            self.take()
            return ("not", self.negation())
        return self.predicate()

    def predicate(self):
        if self.at("punct", "("):
            # a parenthesised condition (operands are never parenthesised alone in our use)
            self.take()
            node = self.condition()
            self.take("punct", ")")
            return node
        if self.at("word") and self.peek()[1] in _FUNCTIONS and self.peek(1) == ("punct", "(") \
                and self.peek()[1] != "size":
            return self.function()
        left = self.operand()
        if self.at("cmp"):
            op = self.take()[1]
            return ("cmp", op, left, self.operand())
        if self.at("kw", "BETWEEN"):
            self.take()
            lo = self.operand()
            self.take("kw", "AND")
            return ("between", left, lo, self.operand())
        if self.at("kw", "IN"):
            self.take()
            self.take("punct", "(")
            options = [self.operand()]
            while self.at("punct", ","):
                self.take()
                options.append(self.operand())
            self.take("punct", ")")
            return ("in", left, options)
        raise ValueError(f"expected a comparison after {left}")

    def function(self):
        name = self.take("word")[1]
        self.take("punct", "(")
        args = [self.operand()]
        while self.at("punct", ","):
            self.take()
            args.append(self.operand())
        self.take("punct", ")")
        return ("fn", name, args)

    def operand(self):
        if self.at("value"):
            return ("value", self.take()[1])
        if self.at("word") and self.peek()[1] in _FUNCTIONS and self.peek(1) == ("punct", "("):
            return self.function()
        return self.path()

    def path(self):
        segments: list[Any] = [self._name()]
        while True:
            if self.at("dot"):
                self.take()
                segments.append(self._name())
            elif self.at("punct", "["):
                self.take()
                segments.append(int(self.take("int")[1]))
                self.take("punct", "]")
            else:
                return ("path", segments)

    def _name(self) -> str:
        kind, tok = self.take()
        if kind == "name":
            if tok not in self.names:
                raise ValueError(f"ExpressionAttributeNames has no {tok}")
            self.used_names.add(tok)
            return self.names[tok]
        if kind == "word":
            return tok
        raise ValueError(f"expected an attribute name, found {tok}")

    # update expressions
    def update(self) -> list[tuple]:
        actions = []
        while not self.done():
            clause = self.take("kw")[1]
            while True:
                if clause == "SET":
                    target = self.path()
                    self.take("cmp", "=")
                    actions.append(("SET", target, self.set_value()))
                elif clause == "REMOVE":
                    actions.append(("REMOVE", self.path(), None))
                elif clause in ("ADD", "DELETE"):
                    target = self.path()
                    actions.append((clause, target, self.operand()))
                else:
                    raise ValueError(f"unknown update clause {clause}")
                if self.at("punct", ","):
                    self.take()
                    continue
                break
        return actions

    def set_value(self):
        left = self.operand()
        if self.at("punct", "+") or self.at("punct", "-"):
            op = self.take()[1]
            return ("arith", op, left, self.operand())
        return left

    def projection(self) -> list:
        paths = [self.path()]
        while self.at("punct", ","):
            self.take()
            paths.append(self.path())
        return paths


_PARSED: dict[tuple, Any] = {}  # (kind, expression, names) -> its tree: the service sends a few dozen shapes


def _parse(kind: str, text: str, names: dict | None):
    key = (kind, text, tuple(sorted(names.items())) if names else None)
    found = _PARSED.get(key)
    if found is not None:
        return found, None
    parser = _Parser(text, names)
    node = {"condition": parser.condition, "update": parser.update, "projection": parser.projection}[kind]()
    if not parser.done():
        raise ValueError(f"unexpected {parser.peek()} in {text!r}")
    if len(_PARSED) < 10_000:
        _PARSED[key] = node
    return node, parser


# ---- evaluation -----------------------------------------------------------------------------------------


def _get(item: dict, segments: list) -> dict | None:
    value: Any = item.get(segments[0])
    for seg in segments[1:]:
        if value is None:
            return None
        if isinstance(seg, int):
            value = value.get("L", [])[seg] if "L" in value and seg < len(value["L"]) else None
        else:
            value = value.get("M", {}).get(seg) if "M" in value else None
    return value


class _Eval:
    def __init__(self, values: dict | None):
        self.values = values or {}
        self.used_values: set[str] = set()

    def operand(self, node, item: dict) -> dict | None:
        tag = node[0]
        if tag == "value":
            if node[1] not in self.values:
                raise ValueError(f"ExpressionAttributeValues has no {node[1]}")
            self.used_values.add(node[1])
            return self.values[node[1]]
        if tag == "path":
            return _get(item, node[1])
        if tag == "fn" and node[1] == "size":
            v = self.operand(node[2][0], item)
            if v is None:
                return None
            (k, raw), = v.items()
            size = len(raw.encode()) if k == "S" else len(raw)
            return {"N": str(size)}
        raise ValueError(f"not an operand: {node}")

    def test(self, node, item: dict) -> bool:
        handler = _CONDITIONS.get(node[0])
        if handler is None:
            raise ValueError(f"not a condition: {node}")
        return handler(self, node, item)

    def _function(self, node, item: dict) -> bool:
        check = _CONDITION_FUNCTIONS.get(node[1])
        if check is None:
            raise ValueError(f"not a condition: {node}")
        return check(*(self.operand(arg, item) for arg in node[2]))


def _begins_with(a: dict | None, b: dict | None) -> bool:
    return a is not None and b is not None and _kind(a) == _kind(b) and _kind(a) in ("S", "B") \
        and _plain(a).startswith(_plain(b))


def _contains(a: dict | None, b: dict | None) -> bool:
    if a is None or b is None:
        return False
    ka = _kind(a)
    if ka == "S":
        return _kind(b) == "S" and _plain(b) in _plain(a)
    if ka in ("SS", "NS", "BS"):
        return next(iter(b.values())) in a[ka]
    if ka == "L":
        return b in a["L"]
    return False


# Condition functions, on their evaluated operands.
_CONDITION_FUNCTIONS = {
    "attribute_exists": lambda a: a is not None,
    "attribute_not_exists": lambda a: a is None,
    "attribute_type": lambda a, t: _kind(a) == _plain(t),
    "begins_with": _begins_with,
    "contains": _contains,
}


def _between(ev: _Eval, node, item: dict) -> bool:
    a, lo, hi = (ev.operand(n, item) for n in node[1:])
    return _compare(">=", a, lo) and _compare("<=", a, hi)


# Condition nodes by tag: (evaluator, node, item) -> bool. "and"/"or" evaluate both sides, as before.
_CONDITIONS = {
    "and": lambda ev, node, item: ev.test(node[1], item) & ev.test(node[2], item),
    "or": lambda ev, node, item: ev.test(node[1], item) | ev.test(node[2], item),
    "not": lambda ev, node, item: not ev.test(node[1], item),
    "cmp": lambda ev, node, item: _compare(node[1], ev.operand(node[2], item), ev.operand(node[3], item)),
    "between": _between,
    "in": lambda ev, node, item: any(
        _compare("=", ev.operand(node[1], item), ev.operand(o, item)) for o in node[2]),
    "fn": _Eval._function,
}


def _compare(op: str, a: dict | None, b: dict | None) -> bool:
    if a is None or b is None:
        return op == "<>" and not (a is None and b is None)
    ka, kb = _kind(a), _kind(b)
    if op == "=":
        return ka == kb and (_plain(a) == _plain(b) if ka in ("S", "N", "B") else a == b)
    if op == "<>":
        return not _compare("=", a, b)
    if ka != kb or ka not in ("S", "N", "B"):
        return False
    x, y = _plain(a), _plain(b)
    return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


def _add(item: dict, name: str, add: dict, operation: str) -> None:
    """UpdateExpression ADD: a number is added, a set's new members are appended."""
    current = item.get(name)
    if _kind(add) == "N":
        base = _plain(current) if current is not None else Decimal(0)
        if current is not None and _kind(current) != "N":
            raise _error(_Exceptions.ValidationException, operation, "ADD: type mismatch")
        item[name] = {"N": _number(base + _plain(add))}
    elif _kind(add) in ("SS", "NS", "BS"):
        k = _kind(add)
        merged = list((current or {k: []})[k])
        merged += [v for v in add[k] if v not in merged]
        item[name] = {k: merged}
    else:
        raise _error(_Exceptions.ValidationException, operation, "ADD needs a number or a set")


def _delete(item: dict, name: str, sub: dict) -> None:
    """UpdateExpression DELETE: the set's members in `sub` go; an emptied set goes too."""
    current = item.get(name)
    if current is None:
        return
    k = _kind(current)
    left = [v for v in current[k] if v not in sub.get(k, [])]
    if left:
        item[name] = {k: left}
    else:
        item.pop(name)


# ---- the table ----------------------------------------------------------------------------------------


class _Top:
    """Greater than any key value: (v, _TOP) sorts after every (v, pk, sk)."""

    def __lt__(self, other: object) -> bool:
        return False

    def __le__(self, other: object) -> bool:
        return other is self

    def __gt__(self, other: object) -> bool:
        return other is not self

    def __ge__(self, other: object) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return other is self

    __hash__ = object.__hash__


_TOP = _Top()


class _Index:
    def __init__(self, name: str, hash_key: str, range_key: str | None, projection: dict):
        self.name = name
        self.hash_key = hash_key
        self.range_key = range_key
        self.projection = projection.get("ProjectionType", "ALL")
        self.include = projection.get("NonKeyAttributes", [])
        self.entries: dict[Any, dict[tuple, dict]] = {}  # hash value -> {base key: item}
        # hash value -> (range value, base hash, base range, base key) in Query order: a Query on one big
        # partition (the reconciler's by_due) bisects it instead of testing and sorting every entry
        self.order: dict[Any, SortedList] = {}

    def holds(self, item: dict) -> bool:
        return self.hash_key in item and (self.range_key is None or self.range_key in item)

    def sort_entry(self, item: dict, key: tuple) -> tuple:
        r = _plain(item.get(self.range_key)) if self.range_key else None
        return (r if r is not None else "", key[0], key[1] if key[1] is not None else "", key)

    def add(self, item: dict, key: tuple) -> None:
        hv = _plain(item[self.hash_key])
        self.entries.setdefault(hv, {})[key] = item
        self.order.setdefault(hv, SortedList()).add(self.sort_entry(item, key))

    def remove(self, item: dict, key: tuple) -> None:
        hv = _plain(item[self.hash_key])
        entries = self.entries.get(hv)
        if entries is None or entries.pop(key, None) is None:
            return
        order = self.order[hv]
        order.discard(self.sort_entry(item, key))
        if not entries:
            del self.entries[hv]
            del self.order[hv]

    def in_range(self, hv: Any, range_node, ev) -> list[dict] | None:
        """The partition's items matching the range condition, in Query order (ascending); None: the
        condition is not one this can bisect (the caller tests every item)."""
        order = self.order.get(hv)
        if order is None:
            return []
        lo, hi = 0, len(order)
        prefix = None
        if range_node is not None:
            tag = range_node[0]
            if tag == "cmp" and range_node[2][0] == "path" and range_node[3][0] == "value":
                op, v = range_node[1], _plain(ev.operand(range_node[3], {}))
                first, after = order.bisect_left((v,)), order.bisect_right((v, _TOP))
                lo, hi = {"=": (first, after), "<": (0, first), "<=": (0, after), ">": (after, hi),
                          ">=": (first, hi)}.get(op, (None, None))
                if lo is None:
                    return None
            elif tag == "between" and range_node[2][0] == "value" and range_node[3][0] == "value":
                lo = order.bisect_left((_plain(ev.operand(range_node[2], {})),))
                hi = order.bisect_right((_plain(ev.operand(range_node[3], {})), _TOP))
            elif tag == "fn" and range_node[1] == "begins_with" and range_node[2][1][0] == "value":
                prefix = _plain(ev.operand(range_node[2][1], {}))
                if not isinstance(prefix, str):
                    return None
                lo = order.bisect_left((prefix,))
            else:
                return None
        entries = self.entries[hv]
        out = []
        for entry in order.islice(lo, hi):
            if prefix is not None and not (isinstance(entry[0], str) and entry[0].startswith(prefix)):
                break
            out.append(entries[entry[3]])
        return out


class _Table:
    def __init__(self, name: str, kwargs: dict):
        self.name = name
        self.kwargs = kwargs
        schema = {k["KeyType"]: k["AttributeName"] for k in kwargs["KeySchema"]}
        self.hash_key, self.range_key = schema["HASH"], schema.get("RANGE")
        self.items: dict[Any, dict[Any, dict]] = {}
        self.indexes: dict[str, _Index] = {}
        for g in kwargs.get("GlobalSecondaryIndexes", []) + kwargs.get("LocalSecondaryIndexes", []):
            gs = {k["KeyType"]: k["AttributeName"] for k in g["KeySchema"]}
            self.indexes[g["IndexName"]] = _Index(g["IndexName"], gs["HASH"], gs.get("RANGE"), g["Projection"])

    def key_of(self, item: dict) -> tuple:
        return (_plain(item[self.hash_key]), _plain(item[self.range_key]) if self.range_key else None)

    def key_item(self, item: dict) -> dict:
        keys = [self.hash_key] + ([self.range_key] if self.range_key else [])
        return {k: item[k] for k in keys}

    def check_key(self, key: dict, operation: str) -> tuple:
        wanted = {self.hash_key} | ({self.range_key} if self.range_key else set())
        if set(key) != wanted:
            raise _error(_Exceptions.ValidationException, operation,
                         "The provided key element does not match the schema")
        return self.key_of(key)

    def get(self, key: tuple) -> dict | None:
        return self.items.get(key[0], {}).get(key[1])

    def put(self, item: dict) -> None:
        key = self.key_of(item)
        self.delete(key)
        self.items.setdefault(key[0], {})[key[1]] = item
        for index in self.indexes.values():
            if index.holds(item):
                index.add(item, key)

    def delete(self, key: tuple) -> dict | None:
        partition = self.items.get(key[0])
        old = partition.pop(key[1], None) if partition is not None else None
        if partition is not None and not partition:
            del self.items[key[0]]
        if old is not None:
            for index in self.indexes.values():
                if index.holds(old):
                    index.remove(old, key)
        return old


def _projected(item: dict, index: _Index | None, table: _Table) -> dict:
    if index is None or index.projection == "ALL":
        return item
    keep = {table.hash_key, index.hash_key}
    if table.range_key:
        keep.add(table.range_key)
    if index.range_key:
        keep.add(index.range_key)
    if index.projection == "INCLUDE":
        keep.update(index.include)
    return {k: v for k, v in item.items() if k in keep}


def _apply_projection(item: dict, expression: str | None, names: dict | None) -> dict:
    if not expression:
        return _copy_item(item)
    paths, _ = _parse("projection", expression, names)
    out: dict = {}
    for node in paths:
        segments = node[1]
        if len(segments) == 1:
            if segments[0] in item:
                out[segments[0]] = _copy(item[segments[0]])
        else:  # nested: keep the top-level attribute (enough for our use)
            if segments[0] in item:
                out[segments[0]] = _copy(item[segments[0]])
    return out


class MemoryDynamoDB:
    """A boto3-DynamoDB-client look-alike over dicts (see the module docstring)."""

    exceptions = _Exceptions

    def __init__(self):
        self._tables: dict[str, _Table] = {}
        self._lock = threading.RLock()
        self.calls: dict[str, int] = {}

    # ---- helpers ------------------------------------------------------------------------------------

    def _count(self, operation: str) -> None:
        self.calls[operation] = self.calls.get(operation, 0) + 1

    def _table(self, name: str, operation: str) -> _Table:
        table = self._tables.get(name)
        if table is None:
            raise _error(_Exceptions.ResourceNotFoundException, operation, "Requested resource not found")
        return table

    @staticmethod
    def _condition(operation: str, expression: str | None, names, values, item: dict | None) -> bool:
        if not expression:
            return True
        node, _ = _parse("condition", expression, names)
        return _Eval(values).test(node, item or {})

    @staticmethod
    def _check_no_key_update(table: _Table, actions: list, operation: str) -> None:
        for _, target, _ in actions:
            if target[1][0] in (table.hash_key, table.range_key):
                raise _error(_Exceptions.ValidationException, operation,
                             "Cannot update attribute " + target[1][0] + ". This attribute is part of the key")

    # ---- tables -------------------------------------------------------------------------------------

    def create_table(self, TableName: str, **kwargs) -> dict:  # noqa: N803 - boto3's parameter names
        with self._lock:
            if TableName in self._tables:
                raise _error(_Exceptions.ResourceInUseException, "CreateTable", "Table already exists")
            self._tables[TableName] = _Table(TableName, kwargs)
            return {"TableDescription": {"TableName": TableName, "TableStatus": "ACTIVE", **kwargs}}

    def describe_table(self, TableName: str) -> dict:  # noqa: N803
        with self._lock:
            table = self._table(TableName, "DescribeTable")
            return {"Table": {"TableName": TableName, "TableStatus": "ACTIVE", **table.kwargs,
                              "ItemCount": sum(len(p) for p in table.items.values())}}

    def delete_table(self, TableName: str) -> dict:  # noqa: N803
        with self._lock:
            self._table(TableName, "DeleteTable")
            del self._tables[TableName]
            return {}

    def get_waiter(self, name: str):
        class _Waiter:
            def wait(self, **kwargs):
                return None
        return _Waiter()

    # ---- single items ------------------------------------------------------------------------------

    def get_item(self, TableName: str, Key: dict, ConsistentRead: bool = False,  # noqa: N803
                 ProjectionExpression: str | None = None, ExpressionAttributeNames: dict | None = None) -> dict:
        with self._lock:
            self._count("GetItem")
            table = self._table(TableName, "GetItem")
            item = table.get(table.check_key(Key, "GetItem"))
            if item is None:
                return {}
            return {"Item": _apply_projection(item, ProjectionExpression, ExpressionAttributeNames)}

    def put_item(self, TableName: str, Item: dict, ConditionExpression: str | None = None,  # noqa: N803
                 ExpressionAttributeNames: dict | None = None, ExpressionAttributeValues: dict | None = None,
                 ReturnValues: str = "NONE", **_ignored) -> dict:
        with self._lock:
            self._count("PutItem")
            table = self._table(TableName, "PutItem")
            key = table.check_key(table.key_item(Item), "PutItem")
            old = table.get(key)
            if not self._condition("PutItem", ConditionExpression, ExpressionAttributeNames,
                                   ExpressionAttributeValues, old):
                raise _error(_Exceptions.ConditionalCheckFailedException, "PutItem",
                             "The conditional request failed")
            table.put(_copy_item(_check_size(Item, "PutItem")))
            return {"Attributes": _copy_item(old)} if ReturnValues == "ALL_OLD" and old else {}

    def delete_item(self, TableName: str, Key: dict, ConditionExpression: str | None = None,  # noqa: N803
                    ExpressionAttributeNames: dict | None = None, ExpressionAttributeValues: dict | None = None,
                    ReturnValues: str = "NONE", **_ignored) -> dict:
        with self._lock:
            self._count("DeleteItem")
            table = self._table(TableName, "DeleteItem")
            key = table.check_key(Key, "DeleteItem")
            old = table.get(key)
            if not self._condition("DeleteItem", ConditionExpression, ExpressionAttributeNames,
                                   ExpressionAttributeValues, old):
                raise _error(_Exceptions.ConditionalCheckFailedException, "DeleteItem",
                             "The conditional request failed")
            table.delete(key)
            return {"Attributes": _copy_item(old)} if ReturnValues == "ALL_OLD" and old else {}

    def update_item(self, TableName: str, Key: dict, UpdateExpression: str | None = None,  # noqa: N803
                    ConditionExpression: str | None = None, ExpressionAttributeNames: dict | None = None,
                    ExpressionAttributeValues: dict | None = None, ReturnValues: str = "NONE",
                    **_ignored) -> dict:
        with self._lock:
            self._count("UpdateItem")
            table = self._table(TableName, "UpdateItem")
            key = table.check_key(Key, "UpdateItem")
            old = table.get(key)
            if not self._condition("UpdateItem", ConditionExpression, ExpressionAttributeNames,
                                   ExpressionAttributeValues, old):
                raise _error(_Exceptions.ConditionalCheckFailedException, "UpdateItem",
                             "The conditional request failed")
            new, changed = self._updated(table, Key, old, UpdateExpression, ExpressionAttributeNames,
                                         ExpressionAttributeValues, "UpdateItem")
            table.put(_check_size(new, "UpdateItem"))
            if ReturnValues == "ALL_NEW":
                return {"Attributes": _copy_item(new)}
            if ReturnValues == "ALL_OLD":
                return {"Attributes": _copy_item(old)} if old else {}
            if ReturnValues == "UPDATED_NEW":
                return {"Attributes": {k: _copy(new[k]) for k in changed if k in new}}
            if ReturnValues == "UPDATED_OLD":
                return {"Attributes": {k: _copy(old[k]) for k in changed if old and k in old}}
            return {}

    def _updated(self, table: _Table, key: dict, old: dict | None, expression: str | None, names, values,
                 operation: str) -> tuple[dict, set[str]]:
        item = _copy_item(old) if old else _copy_item(key)
        changed: set[str] = set()
        if not expression:
            return item, changed
        actions, _ = _parse("update", expression, names)
        self._check_no_key_update(table, actions, operation)
        ev = _Eval(values)
        for verb, target, arg in actions:
            segments = target[1]
            if len(segments) != 1:
                raise _error(_Exceptions.ValidationException, operation, "nested update paths are not supported")
            name = segments[0]
            changed.add(name)
            if verb == "REMOVE":
                item.pop(name, None)
            elif verb == "SET":
                item[name] = _copy(self._set_value(ev, arg, old or {}, operation))
            elif verb == "ADD":
                _add(item, name, ev.operand(arg, old or {}), operation)
            elif verb == "DELETE":
                _delete(item, name, ev.operand(arg, old or {}))
        return item, changed

    def _set_value(self, ev: _Eval, node, item: dict, operation: str) -> dict:
        if node[0] == "arith":
            a, b = self._set_value(ev, node[2], item, operation), self._set_value(ev, node[3], item, operation)
            if _kind(a) != "N" or _kind(b) != "N":
                raise _error(_Exceptions.ValidationException, operation, "arithmetic needs numbers")
            result = _plain(a) + _plain(b) if node[1] == "+" else _plain(a) - _plain(b)
            return {"N": _number(result)}
        if node[0] == "fn" and node[1] == "if_not_exists":
            current = ev.operand(node[2][0], item)
            return current if current is not None else self._set_value(ev, node[2][1], item, operation)
        if node[0] == "fn" and node[1] == "list_append":
            a, b = (self._set_value(ev, n, item, operation) for n in node[2])
            return {"L": list(a["L"]) + list(b["L"])}
        value = ev.operand(node, item)
        if value is None:
            raise _error(_Exceptions.ValidationException, operation,
                         "The provided expression refers to an attribute that does not exist in the item")
        return value

    # ---- queries ------------------------------------------------------------------------------------

    def query(self, TableName: str, KeyConditionExpression: str, IndexName: str | None = None,  # noqa: N803
              ExpressionAttributeNames: dict | None = None, ExpressionAttributeValues: dict | None = None,
              Limit: int | None = None, ExclusiveStartKey: dict | None = None, ScanIndexForward: bool = True,
              Select: str | None = None, ConsistentRead: bool = False, FilterExpression: str | None = None,
              ProjectionExpression: str | None = None, **_ignored) -> dict:
        with self._lock:
            self._count("Query")
            table = self._table(TableName, "Query")
            index = None
            if IndexName is not None:
                index = table.indexes.get(IndexName)
                if index is None:
                    raise _error(_Exceptions.ValidationException, "Query",
                                 f"The table does not have the specified index: {IndexName}")
                if ConsistentRead:
                    raise _error(_Exceptions.ValidationException, "Query",
                                 "Consistent reads are not supported on global secondary indexes")
            hash_key = index.hash_key if index else table.hash_key
            range_key = index.range_key if index else table.range_key
            node, _ = _parse("condition", KeyConditionExpression, ExpressionAttributeNames)
            ev = _Eval(ExpressionAttributeValues)
            hash_value, range_node = self._key_condition(node, hash_key, range_key, ev)
            found = index.in_range(hash_value, range_node, ev) if index is not None else None
            if found is not None:
                candidates = found[::-1] if not ScanIndexForward else found
            else:
                if index is None:
                    candidates = list(table.items.get(hash_value, {}).values())
                else:
                    candidates = list(index.entries.get(hash_value, {}).values())
                if range_node is not None:
                    candidates = [i for i in candidates if ev.test(range_node, i)]

                def order(i: dict):
                    r = _plain(i.get(range_key)) if range_key else None
                    return (r if r is not None else "", table.key_of(i)[0], table.key_of(i)[1] or "")

                candidates.sort(key=order, reverse=not ScanIndexForward)
            return self._page(table, index, candidates, Limit, ExclusiveStartKey, Select, FilterExpression,
                              ProjectionExpression, ExpressionAttributeNames, ev, "Query")

    @staticmethod
    def _key_condition(node, hash_key: str, range_key: str | None, ev: _Eval):
        conjuncts = []

        def flatten(n):
            if n[0] == "and":
                flatten(n[1])
                flatten(n[2])
            else:
                conjuncts.append(n)

        flatten(node)
        hash_value, range_node = None, None
        for c in conjuncts:
            if c[0] == "cmp" and c[1] == "=" and c[2][0] == "path" and c[2][1] == [hash_key] and hash_value is None:
                hash_value = _plain(ev.operand(c[3], {}))
            elif range_key is not None and range_node is None and (
                    (c[0] in ("cmp", "between") and c[2 if c[0] == "cmp" else 1][1] == [range_key])
                    or (c[0] == "fn" and c[1] == "begins_with" and c[2][0][1] == [range_key])):
                if c[0] == "cmp" and c[1] in ("<>",):
                    raise _error(_Exceptions.ValidationException, "Query", "Unsupported key condition operator")
                range_node = c
            else:
                raise _error(_Exceptions.ValidationException, "Query",
                             "Query key condition not supported")
        if hash_value is None:
            raise _error(_Exceptions.ValidationException, "Query", "Query condition missed key schema element")
        return hash_value, range_node

    def _page(self, table: _Table, index: _Index | None, candidates: list[dict], limit, start_key, select,
              filter_expression, projection, names, ev: _Eval, operation: str) -> dict:
        if start_key:
            base = table.key_of(start_key)
            for n, item in enumerate(candidates):
                if table.key_of(item) == base:
                    candidates = candidates[n + 1:]
                    break
        last = None
        if limit is not None and len(candidates) > limit:
            candidates = candidates[:limit]
            last = candidates[-1]
        elif limit is not None and len(candidates) == limit and candidates:
            last = candidates[-1]  # DynamoDB returns a LastEvaluatedKey when the limit is reached
        scanned = len(candidates)
        if filter_expression:
            fnode, _ = _parse("condition", filter_expression, names)
            candidates = [i for i in candidates if ev.test(fnode, i)]
        out: dict = {"Count": len(candidates), "ScannedCount": scanned}
        if select != "COUNT":
            out["Items"] = [_apply_projection(_projected(i, index, table), projection, names) for i in candidates]
        if last is not None:
            key = table.key_item(last)
            if index is not None:
                key[index.hash_key] = last[index.hash_key]
                if index.range_key:
                    key[index.range_key] = last[index.range_key]
            out["LastEvaluatedKey"] = _copy_item(key)
        return out

    def scan(self, TableName: str, IndexName: str | None = None, Limit: int | None = None,  # noqa: N803
             ExclusiveStartKey: dict | None = None, FilterExpression: str | None = None,
             ExpressionAttributeNames: dict | None = None, ExpressionAttributeValues: dict | None = None,
             ProjectionExpression: str | None = None, Select: str | None = None, **_ignored) -> dict:
        with self._lock:
            self._count("Scan")
            table = self._table(TableName, "Scan")
            index = table.indexes.get(IndexName) if IndexName else None
            if index is not None:
                candidates = [i for entries in index.entries.values() for i in entries.values()]
            else:
                candidates = [i for part in table.items.values() for i in part.values()]
            candidates.sort(key=lambda i: (str(table.key_of(i)[0]), str(table.key_of(i)[1] or "")))
            return self._page(table, index, candidates, Limit, ExclusiveStartKey, Select, FilterExpression,
                              ProjectionExpression, ExpressionAttributeNames, _Eval(ExpressionAttributeValues),
                              "Scan")

    # ---- batches and transactions ------------------------------------------------------------------------

    def batch_get_item(self, RequestItems: dict, **_ignored) -> dict:  # noqa: N803
        with self._lock:
            self._count("BatchGetItem")
            if sum(len(r["Keys"]) for r in RequestItems.values()) > 100:
                raise _error(_Exceptions.ValidationException, "BatchGetItem",
                             "Too many items requested for the BatchGetItem call")
            responses: dict[str, list] = {}
            for name, request in RequestItems.items():
                table = self._table(name, "BatchGetItem")
                found = responses.setdefault(name, [])
                seen = set()
                for key in request["Keys"]:
                    k = table.check_key(key, "BatchGetItem")
                    if k in seen:
                        raise _error(_Exceptions.ValidationException, "BatchGetItem",
                                     "Provided list of item keys contains duplicates")
                    seen.add(k)
                    item = table.get(k)
                    if item is not None:
                        found.append(_apply_projection(item, request.get("ProjectionExpression"),
                                                       request.get("ExpressionAttributeNames")))
            return {"Responses": responses, "UnprocessedKeys": {}}

    def batch_write_item(self, RequestItems: dict, **_ignored) -> dict:  # noqa: N803
        with self._lock:
            self._count("BatchWriteItem")
            if sum(len(r) for r in RequestItems.values()) > 25:
                raise _error(_Exceptions.ValidationException, "BatchWriteItem",
                             "Too many items requested for the BatchWriteItem call")
            for requests_ in RequestItems.values():  # the whole request is refused, nothing written
                for r in requests_:
                    if "PutRequest" in r:
                        _check_size(r["PutRequest"]["Item"], "BatchWriteItem")
            for name, requests_ in RequestItems.items():
                table = self._table(name, "BatchWriteItem")
                for r in requests_:
                    if "PutRequest" in r:
                        item = r["PutRequest"]["Item"]
                        table.check_key(table.key_item(item), "BatchWriteItem")
                        table.put(_copy_item(item))
                    else:
                        table.delete(table.check_key(r["DeleteRequest"]["Key"], "BatchWriteItem"))
            return {"UnprocessedItems": {}}

    def transact_write_items(self, TransactItems: list, **_ignored) -> dict:  # noqa: N803
        with self._lock:
            self._count("TransactWriteItems")
            if len(TransactItems) > 100:
                raise _error(_Exceptions.ValidationException, "TransactWriteItems", "too many items")
            reasons, plans, failed, seen = [], [], False, set()
            for entry in TransactItems:
                (verb, spec), = entry.items()
                table = self._table(spec["TableName"], "TransactWriteItems")
                key = table.check_key(spec["Key"] if "Key" in spec else table.key_item(spec["Item"]),
                                      "TransactWriteItems")
                if (table.name, key) in seen:
                    raise _error(_Exceptions.ValidationException, "TransactWriteItems",
                                 "Transaction request cannot include multiple operations on one item")
                seen.add((table.name, key))
                old = table.get(key)
                ok = self._condition("TransactWriteItems", spec.get("ConditionExpression"),
                                     spec.get("ExpressionAttributeNames"), spec.get("ExpressionAttributeValues"), old)
                if ok:
                    reasons.append({"Code": "None"})
                else:
                    failed = True
                    reasons.append({"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"})
                plans.append((verb, spec, table, key, old))
            if failed:
                codes = ", ".join(r["Code"] for r in reasons)
                raise _error(_Exceptions.TransactionCanceledException, "TransactWriteItems",
                             f"Transaction cancelled, please refer cancellation reasons for specific reasons "
                             f"[{codes}]", CancellationReasons=reasons)
            writes = []  # every item's new state first: one too large cancels the whole transaction
            for verb, spec, table, key, old in plans:
                if verb == "Put":
                    writes.append((table, key, _copy_item(_check_size(spec["Item"], "TransactWriteItems"))))
                elif verb == "Delete":
                    writes.append((table, key, None))
                elif verb == "Update":
                    new, _ = self._updated(table, spec["Key"], old, spec.get("UpdateExpression"),
                                           spec.get("ExpressionAttributeNames"),
                                           spec.get("ExpressionAttributeValues"), "TransactWriteItems")
                    writes.append((table, key, _check_size(new, "TransactWriteItems")))
            for table, key, item in writes:
                if item is None:
                    table.delete(key)
                else:
                    table.put(item)
            return {}
