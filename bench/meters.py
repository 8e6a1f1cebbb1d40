"""Meters for bench/week.py: what the handlers ask of AWS and Cronofy, how long each invocation takes
and how much it allocates. Everything here wraps from the outside (botocore, requests, one
DevStack instance); nothing in the service or the local stack is changed.

- `AwsMeter` wraps `botocore.client.BaseClient._make_api_call`: every AWS request counted by owner
  (the function whose invocation made it, or "harness" for the local stack and the simulated core
  platform), service and operation, with DynamoDB request units estimated from item sizes.
- `InvokeMeter` wraps `DevStack.invoke` on one instance: wall time, the AWS and Cronofy requests of
  each invocation, and (sampled, never two at once) the tracemalloc peak.
- `fast_moto_queries()` keeps moto's Query at O(partition): moto 5 sorts the whole table on every
  Query, which at this workload's ~20,000 items would make the harness, not the service, the bench.
"""

from __future__ import annotations

import math
import threading
import time
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import botocore.client
import requests

_local = threading.local()


def current_owner() -> str:
    return getattr(_local, "owner", None) or "harness"


# ---- DynamoDB request units (on-demand), estimated from the items on the wire -------------------------

READ_UNIT = 4096
WRITE_UNIT = 1024


def attribute_size(value: dict[str, Any]) -> int:
    """DynamoDB's item-size rules, close enough for billing estimates."""
    (kind, raw), = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "N":
        digits = len(raw.lstrip("-").replace(".", "").lstrip("0")) or 1
        return (digits + 1) // 2 + 1
    if kind == "B":
        return len(raw) if isinstance(raw, (bytes, bytearray)) else len(raw.encode())
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(len(x) if isinstance(x, (bytes, bytearray)) else len(str(x)) for x in raw)
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in raw)
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(v) + 1 for k, v in raw.items())
    return 1


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


@dataclass
class Index:
    name: str
    keys: tuple[str, ...]
    projection: str  # ALL | KEYS_ONLY


def indexes_from_template(table_kwargs: dict[str, Any]) -> list[Index]:
    return [Index(g["IndexName"], tuple(k["AttributeName"] for k in g["KeySchema"]),
                  g["Projection"]["ProjectionType"]) for g in table_kwargs.get("GlobalSecondaryIndexes", [])]


class Capacity:
    """Request units of one DynamoDB call: base table plus every GSI the written item belongs to."""

    def __init__(self, indexes: list[Index]):
        self.indexes = indexes

    def _write_units(self, item: dict[str, Any]) -> float:
        size = item_size(item)
        units = max(1, math.ceil(size / WRITE_UNIT))
        for index in self.indexes:
            if all(k in item for k in index.keys):
                projected = size if index.projection == "ALL" else sum(
                    len(k) + attribute_size(item[k]) for k in (*index.keys, "pk", "sk") if k in item)
                units += max(1, math.ceil(projected / WRITE_UNIT))
        return units

    def _delete_units(self, key: dict[str, Any]) -> float:
        """A delete costs the deleted item's size (not on the wire): 1 unit, plus its GSI entries, which
        follow from the sort key's kind in this table's design."""
        sk = key.get("sk", {}).get("S", "")
        gsis = 3 if sk == "CONNECTION" else 1 if sk.startswith(("REF#", "SCHEDULED#")) else 0
        return 1 + gsis

    @staticmethod
    def _read_units(sizes: list[int], consistent: bool, per_item: bool) -> float:
        factor = 1.0 if consistent else 0.5
        if per_item:
            return sum(max(1, math.ceil(s / READ_UNIT)) for s in sizes) * factor or factor
        return max(1, math.ceil(sum(sizes) / READ_UNIT)) * factor

    def units(self, operation: str, params: dict[str, Any], response: dict[str, Any] | None) -> tuple[float, float]:
        """(read units, write units)."""
        cost = self._COSTS.get(operation)
        return cost(self, params, response or {}) if cost else (0.0, 0.0)

    def _put(self, params: dict[str, Any], response: dict[str, Any]) -> tuple[float, float]:
        return 0.0, self._write_units(params["Item"])

    def _update(self, params: dict[str, Any], response: dict[str, Any]) -> tuple[float, float]:
        return 0.0, 1.0

    def _delete(self, params: dict[str, Any], response: dict[str, Any]) -> tuple[float, float]:
        return 0.0, self._delete_units(params["Key"])

    def _batch_write(self, params: dict[str, Any], response: dict[str, Any]) -> tuple[float, float]:
        total = 0.0
        for requests_ in params["RequestItems"].values():
            for r in requests_:
                total += self._write_units(r["PutRequest"]["Item"]) if "PutRequest" in r else \
                    self._delete_units(r["DeleteRequest"]["Key"])
        return 0.0, total

    def _transact_write(self, params: dict[str, Any], response: dict[str, Any]) -> tuple[float, float]:
        total = 0.0
        for entry in params["TransactItems"]:
            if "Put" in entry:
                total += self._write_units(entry["Put"]["Item"])
            elif "Delete" in entry:
                total += self._delete_units(entry["Delete"]["Key"])
            else:
                total += 1
        return 0.0, 2 * total  # transactions cost double

    def _get(self, params: dict[str, Any], response: dict[str, Any]) -> tuple[float, float]:
        item = response.get("Item")
        return self._read_units([item_size(item)] if item else [0], params.get("ConsistentRead", False), True), 0.0

    def _batch_get(self, params: dict[str, Any], response: dict[str, Any]) -> tuple[float, float]:
        total = 0.0
        for table, request in params["RequestItems"].items():
            found = response.get("Responses", {}).get(table, [])
            sizes = [item_size(i) for i in found] + [0] * max(0, len(request["Keys"]) - len(found))
            total += self._read_units(sizes, request.get("ConsistentRead", False), True)
        return total, 0.0

    def _query(self, params: dict[str, Any], response: dict[str, Any]) -> tuple[float, float]:
        sizes = [item_size(i) for i in response.get("Items", [])]
        return self._read_units(sizes, params.get("ConsistentRead", False), False), 0.0

    _COSTS: ClassVar[dict[str, Callable[..., tuple[float, float]]]] = {
        "PutItem": _put,
        "UpdateItem": _update,
        "DeleteItem": _delete,
        "BatchWriteItem": _batch_write,
        "TransactWriteItems": _transact_write,
        "GetItem": _get,
        "BatchGetItem": _batch_get,
        "Query": _query,
        "Scan": _query,
    }


# ---- every AWS request ------------------------------------------------------------------------------------

@dataclass
class AwsMeter:
    capacity: Capacity
    counts: Counter = field(default_factory=Counter)  # (owner, service, operation) -> requests
    read_units: Counter = field(default_factory=Counter)  # (owner, operation) -> RRU
    write_units: Counter = field(default_factory=Counter)  # (owner, operation) -> WRU
    _original: Any = None
    active: bool = False

    def install(self) -> None:
        meter = self
        original = botocore.client.BaseClient._make_api_call
        self._original = original

        def _make_api_call(client, operation_name, api_params):
            if not meter.active:
                return original(client, operation_name, api_params)
            service = client.meta.service_model.service_name
            owner = current_owner()
            meter.counts[(owner, service, operation_name)] += 1
            calls = getattr(_local, "calls", None)
            if calls is not None:
                calls[(service, operation_name)] += 1
            response = None
            try:
                response = original(client, operation_name, api_params)
                return response
            finally:
                if service == "dynamodb":
                    try:
                        rru, wru = meter.capacity.units(operation_name, api_params, response)
                    except (KeyError, TypeError, ValueError):
                        rru, wru = 0.0, 0.0
                    meter.read_units[(owner, operation_name)] += rru
                    meter.write_units[(owner, operation_name)] += wru

        botocore.client.BaseClient._make_api_call = _make_api_call

    def uninstall(self) -> None:
        if self._original is not None:
            botocore.client.BaseClient._make_api_call = self._original
            self._original = None

    def snapshot(self) -> dict[str, Counter]:
        return {"counts": Counter(self.counts), "rru": Counter(self.read_units), "wru": Counter(self.write_units)}


# ---- Cronofy requests made by the handlers (the emulator's log is the authority on totals) ------------

class CronofyMeter:
    """Attributes each request to the emulator to the function whose invocation made it."""

    def __init__(self, emulator_base_url: str):
        self.base = emulator_base_url
        self.by_owner: Counter = Counter()
        self.batch_entries = 0  # calendar writes carried inside /v1/batch requests
        self._original = None
        self._original_batch = None

    def install(self) -> None:
        meter = self
        original = requests.Session.request
        self._original = original

        def request(session, method, url, *args, **kwargs):
            if isinstance(url, str) and url.startswith(meter.base):
                meter.by_owner[current_owner()] += 1
                calls = getattr(_local, "cronofy", None)
                if calls is not None:
                    _local.cronofy = calls + 1
                if url.endswith("/v1/batch"):
                    body = kwargs.get("json") or {}
                    meter.batch_entries += len(body.get("batch", []))
            return original(session, method, url, *args, **kwargs)

        requests.Session.request = request

    def uninstall(self) -> None:
        if self._original is not None:
            requests.Session.request = self._original
            self._original = None


# ---- invocations ----------------------------------------------------------------------------------------

@dataclass
class Invocation:
    function: str
    route: str | None
    seconds: float
    aws: Counter
    cronofy: int
    peak_bytes: int | None  # None: not traced (sampling, or tracing was busy with another invocation)
    overlapped: bool = False  # another invocation ran meanwhile: its allocations are in peak_bytes too


class InvokeMeter:
    """Wraps one DevStack's `invoke` (instance attribute: the router, the SQS pump and the Step
    Functions bridge all call `stack.invoke`)."""

    def __init__(self, stack, trace_first: int = 10, trace_every: int = 5):
        self.stack = stack
        self.records: list[Invocation] = []
        self.trace_first = trace_first
        self.trace_every = trace_every
        self._seen: Counter = Counter()
        self._lock = threading.Lock()
        self._active = 0
        self._tracer: int | None = None  # id of the invocation that owns tracemalloc
        self._spoiled = False  # another invocation overlapped the traced one
        self._next_id = 0
        self._original = stack.invoke

    def install(self) -> None:
        self.stack.invoke = self.invoke

    def uninstall(self) -> None:
        self.stack.invoke = self._original

    def invoke(self, function_id: str, event: dict[str, Any]) -> Any:
        route = event.get("routeKey") if isinstance(event, dict) else None
        key = (function_id, route)
        with self._lock:
            self._seen[key] += 1
            n = self._seen[key]
            self._next_id += 1
            me = self._next_id
            want = n <= self.trace_first or n % self.trace_every == 0
            if self._active:
                self._spoiled = True
            traced = want and self._active == 0 and not tracemalloc.is_tracing()
            if traced:
                self._tracer, self._spoiled = me, False
                tracemalloc.start()
            self._active += 1
        saved = (getattr(_local, "owner", None), getattr(_local, "calls", None), getattr(_local, "cronofy", None))
        _local.owner, _local.calls, _local.cronofy = function_id, Counter(), 0
        started = time.perf_counter()
        try:
            return self._original(function_id, event)
        finally:
            seconds = time.perf_counter() - started
            calls, cronofy = _local.calls, _local.cronofy
            _local.owner, _local.calls, _local.cronofy = saved
            if saved[1] is not None:  # a nested invocation (none expected): its calls belong to the outer too
                saved[1].update(calls)
            peak, overlapped = None, False
            with self._lock:
                self._active -= 1
                if traced and self._tracer == me:
                    _, peak = tracemalloc.get_traced_memory()
                    tracemalloc.stop()
                    self._tracer, overlapped = None, self._spoiled
            self.records.append(Invocation(function_id, route, seconds, calls, cronofy, peak, overlapped))

    def by_function(self) -> dict[str, list[Invocation]]:
        grouped: dict[str, list[Invocation]] = defaultdict(list)
        for r in self.records:
            grouped[r.function].append(r)
        return grouped


@contextmanager
def owner(name: str):
    """Attribute AWS and Cronofy requests made in this block to `name` (e.g. the simulated core platform)."""
    saved = getattr(_local, "owner", None)
    _local.owner = name
    try:
        yield
    finally:
        _local.owner = saved


# ---- moto: Query without sorting the whole table ------------------------------------------------------

def fast_moto_queries() -> None:
    """moto 5's Table.query starts from `all_items()`, which sorts every item of the table, and then
    filters and sorts again. For a base-table Query the result is the partition sorted by range key,
    so hand it just the partition; for an index Query hand it the items unsorted (it re-sorts them
    by the index keys). Results are unchanged; only the harness gets faster."""
    from moto.dynamodb.models.table import Table

    if getattr(Table, "_bench_fast_query", False):
        return
    original_query = Table.query
    original_all_items = Table.all_items
    state = threading.local()

    def all_items(self):
        override = getattr(state, "override", None)
        if override is not None and override[0] is self:
            return override[1]()
        return original_all_items(self)

    def unsorted(table):
        items = []
        for hash_set in list(table.items.values()):
            items.extend(hash_set.values() if table.range_key_attr else [hash_set])
        return items

    def query(self, hash_key, *args, **kwargs):
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        if index_name is None and hash_key is not None and self.range_key_attr:
            def partition():
                part = self.items.get(hash_key) if hash_key in self.items else None
                return list(part.values()) if part else []
            state.override = (self, partition)
        else:
            state.override = (self, lambda: unsorted(self))
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            state.override = None

    Table.all_items = all_items
    Table.query = query
    Table._bench_fast_query = True
