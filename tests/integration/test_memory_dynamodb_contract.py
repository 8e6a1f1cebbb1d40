"""The in-memory DynamoDB client (localdev/memory_dynamodb.py, the capacity benchmark's store) against
moto: the same tests, through calsync.store.Store, the rate limiter and the raw client calls, must give
the same answers on both. The table is created from template.yaml's definition, so a new GSI is
exercised on both as soon as it is declared."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from localdev import template
from localdev.memory_dynamodb import MemoryDynamoDB
from localdev.moto_limits import enforce_item_size

TABLE = "contract-table"


@pytest.fixture(params=["moto", "memory"])
def db(request, monkeypatch):
    _, kwargs = template.table_definition(template.load())
    if request.param == "moto":
        for k, v in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(k, v)
        enforce_item_size()  # as the local stack runs moto
        with mock_aws():
            client = boto3.client("dynamodb", region_name="us-east-1")
            client.create_table(TableName=TABLE, **kwargs)
            yield client
    else:
        client = MemoryDynamoDB()
        client.create_table(TableName=TABLE, **kwargs)
        yield client


def S(v):  # noqa: N802
    return {"S": v}


def N(v):  # noqa: N802
    return {"N": str(v)}


def put(db, pk, sk, **attrs):
    item = {"pk": S(pk), "sk": S(sk)}
    item.update({k: (N(v) if isinstance(v, int) else S(v)) for k, v in attrs.items()})
    db.put_item(TableName=TABLE, Item=item)


def keys(resp):
    return [(i["pk"]["S"], i["sk"]["S"]) for i in resp.get("Items", [])]


# ---- raw client calls ------------------------------------------------------------------------------------

def _periods(entries: int) -> dict:
    return {"M": {f"{i:016x}": S("2026-12-08T09:00:00Z/2026-12-08T09:01:00Z") for i in range(entries)}}


def test_the_item_size_limit_is_dynamodbs_400_kb_counted_as_dynamodb_counts(db):
    """58 bytes a map entry as DynamoDB counts (1 + 16 + 41): 7,080 entries are 410,6xx bytes, over
    409,600, though moto's own count (57 bytes an entry, limit 405,000) took them."""
    db.put_item(TableName=TABLE, Item={"pk": S("u"), "sk": S("fits"), "periods": _periods(7_000)})
    too_large = {"pk": S("u"), "sk": S("big"), "periods": _periods(7_080)}
    with pytest.raises(ClientError) as err:
        db.put_item(TableName=TABLE, Item=too_large)
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert "size has exceeded" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError):
        db.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": too_large}}]})
    with pytest.raises(ClientError):
        db.update_item(TableName=TABLE, Key={"pk": S("u"), "sk": S("fits")}, UpdateExpression="SET more = :m",
                       ExpressionAttributeValues={":m": S("x" * 5_000)})
    found = db.query(TableName=TABLE, KeyConditionExpression="pk = :u", ExpressionAttributeValues={":u": S("u")})
    assert keys(found) == [("u", "fits")] and len(found["Items"][0]["periods"]["M"]) == 7_000


def test_conditional_put_and_errors_are_client_errors(db):
    db.put_item(TableName=TABLE, Item={"pk": S("a"), "sk": S("1"), "v": N(1)},
                ConditionExpression="attribute_not_exists(pk)")
    with pytest.raises(db.exceptions.ConditionalCheckFailedException) as err:
        db.put_item(TableName=TABLE, Item={"pk": S("a"), "sk": S("1"), "v": N(2)},
                    ConditionExpression="attribute_not_exists(pk)")
    assert isinstance(err.value, ClientError)
    assert err.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    # version guard: OR, <, names and values
    db.put_item(TableName=TABLE, Item={"pk": S("a"), "sk": S("1"), "v": N(5)},
                ConditionExpression="attribute_not_exists(pk) OR #v < :v",
                ExpressionAttributeNames={"#v": "v"}, ExpressionAttributeValues={":v": N(5)})
    with pytest.raises(db.exceptions.ConditionalCheckFailedException):
        db.put_item(TableName=TABLE, Item={"pk": S("a"), "sk": S("1"), "v": N(4)},
                    ConditionExpression="attribute_not_exists(pk) OR #v < :v",
                    ExpressionAttributeNames={"#v": "v"}, ExpressionAttributeValues={":v": N(4)})
    assert db.get_item(TableName=TABLE, Key={"pk": S("a"), "sk": S("1")})["Item"]["v"] == N(5)


@pytest.mark.parametrize("expression,values,holds", [
    ("#s IN (:a, :b)", {":a": S("x"), ":b": S("connected")}, True),
    ("#s IN (:a)", {":a": S("x")}, False),
    ("NOT #s = :a", {":a": S("x")}, True),
    ("#s <> :a AND #n >= :n", {":a": S("x"), ":n": N(3)}, True),
    ("#s <> :a AND (#n > :n OR #n <= :m)", {":a": S("x"), ":n": N(3), ":m": N(2)}, False),
    ("#n BETWEEN :lo AND :hi", {":lo": N(1), ":hi": N(3)}, True),
    ("begins_with(#s, :p)", {":p": S("conn")}, True),
    ("attribute_exists(#s) AND attribute_not_exists(#missing)", None, True),
    ("size(#s) > :n", {":n": N(5)}, True),
    ("contains(#s, :p)", {":p": S("nect")}, True),
])
def test_condition_expressions(db, expression, values, holds):
    put(db, "u", "c", state="connected", n=3)
    names = {"#s": "state", "#n": "n", "#missing": "missing"}
    names = {k: v for k, v in names.items() if k in expression}
    kwargs = {"ConditionExpression": expression, "ExpressionAttributeNames": names}
    if values:
        kwargs["ExpressionAttributeValues"] = values
    try:
        db.update_item(TableName=TABLE, Key={"pk": S("u"), "sk": S("c")}, UpdateExpression="SET touched = :t",
                       **{**kwargs, "ExpressionAttributeValues": {**(values or {}), ":t": N(1)}})
        outcome = True
    except db.exceptions.ConditionalCheckFailedException:
        outcome = False
    assert outcome is holds


def test_update_set_add_remove_and_return_values(db):
    resp = db.update_item(TableName=TABLE, Key={"pk": S("u"), "sk": S("b")},
                          UpdateExpression="SET run_id = :r, tat = :t ADD done :n",
                          ExpressionAttributeValues={":r": S("r1"), ":t": N("1.5"), ":n": N(2)},
                          ReturnValues="ALL_NEW")
    assert resp["Attributes"]["done"] == N(2) and resp["Attributes"]["run_id"] == S("r1")
    db.update_item(TableName=TABLE, Key={"pk": S("u"), "sk": S("b")}, UpdateExpression="ADD done :n",
                   ConditionExpression="run_id = :run", ExpressionAttributeValues={":n": N(3), ":run": S("r1")})
    db.update_item(TableName=TABLE, Key={"pk": S("u"), "sk": S("b")},
                   UpdateExpression="SET c = if_not_exists(c, :z) + :one REMOVE tat",
                   ExpressionAttributeValues={":z": N(10), ":one": N(1)})
    item = db.get_item(TableName=TABLE, Key={"pk": S("u"), "sk": S("b")}, ConsistentRead=True)["Item"]
    assert item["done"] == N(5) and item["c"] == N(11) and "tat" not in item
    old = db.delete_item(TableName=TABLE, Key={"pk": S("u"), "sk": S("b")}, ConditionExpression="attribute_exists(pk)",
                         ReturnValues="ALL_OLD")
    assert old["Attributes"]["run_id"] == S("r1")
    with pytest.raises(db.exceptions.ConditionalCheckFailedException):
        db.delete_item(TableName=TABLE, Key={"pk": S("u"), "sk": S("b")}, ConditionExpression="attribute_exists(pk)")
    proj = None
    put(db, "u", "p", org_id="o", channel_id="ch", other="x")
    proj = db.get_item(TableName=TABLE, Key={"pk": S("u"), "sk": S("p")}, ProjectionExpression="org_id, #c",
                       ExpressionAttributeNames={"#c": "channel_id"})["Item"]
    assert proj == {"org_id": S("o"), "channel_id": S("ch")}


def test_key_conditions_paging_order_and_count(db):
    for i in range(7):
        put(db, "P", f"k{i}")
    put(db, "Q", "k0")

    def q(expr, values, **kw):
        return db.query(TableName=TABLE, KeyConditionExpression=expr, ExpressionAttributeValues=values, **kw)

    assert keys(q("pk = :p", {":p": S("P")}))[0] == ("P", "k0")
    assert [k for _, k in keys(q("pk = :p AND sk >= :s", {":p": S("P"), ":s": S("k5")}))] == ["k5", "k6"]
    assert [k for _, k in keys(q("pk = :p AND sk <= :s", {":p": S("P"), ":s": S("k1")}))] == ["k0", "k1"]
    assert [k for _, k in keys(q("pk = :p AND sk < :s", {":p": S("P"), ":s": S("k1")}))] == ["k0"]
    assert [k for _, k in keys(q("pk = :p AND sk BETWEEN :a AND :b", {":p": S("P"), ":a": S("k2"), ":b": S("k3")}))] \
        == ["k2", "k3"]
    assert len(keys(q("pk = :p AND begins_with(sk, :b)", {":p": S("P"), ":b": S("k")}))) == 7
    assert [k for _, k in keys(q("pk = :p", {":p": S("P")}, ScanIndexForward=False, Limit=2))] == ["k6", "k5"]
    assert q("pk = :p", {":p": S("P")}, Select="COUNT")["Count"] == 7
    seen, kwargs = [], {"Limit": 3}
    while True:
        resp = q("pk = :p", {":p": S("P")}, **kwargs)
        seen += [k for _, k in keys(resp)]
        if "LastEvaluatedKey" not in resp:
            break
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
    assert seen == [f"k{i}" for i in range(7)]
    filtered = q("pk = :p", {":p": S("P"), ":x": S("k3")}, FilterExpression="sk <> :x")
    assert filtered["Count"] == 6 and filtered["ScannedCount"] == 7


def test_gsi_queries_are_sparse_projected_and_paged(db):
    gsis = {g["IndexName"]: g for g in template.table_definition(template.load())[1]["GlobalSecondaryIndexes"]}
    # every GSI of the template: an item with its keys is found, one without is not
    for name, g in gsis.items():
        ks = {k["KeyType"]: k["AttributeName"] for k in g["KeySchema"]}
        for i in range(3):
            item = {"pk": S(f"X#{name}#{i}"), "sk": S("s"), ks["HASH"]: S(f"H#{name}"), "extra": S("e")}
            if "RANGE" in ks:
                item[ks["RANGE"]] = S(f"2026-01-0{i + 1}T00:00:00Z")
            db.put_item(TableName=TABLE, Item=item)
        db.put_item(TableName=TABLE, Item={"pk": S(f"Y#{name}"), "sk": S("s")})
        expr = f"{ks['HASH']} = :h"
        values = {":h": S(f"H#{name}")}
        if "RANGE" in ks:
            expr += f" AND {ks['RANGE']} <= :r"
            values[":r"] = S("2026-01-02T00:00:00Z")
        resp = db.query(TableName=TABLE, IndexName=name, KeyConditionExpression=expr, ExpressionAttributeValues=values)
        expected = 2 if "RANGE" in ks else 3
        assert len(resp["Items"]) == expected, name
        if g["Projection"]["ProjectionType"] == "KEYS_ONLY":
            assert all("extra" not in i for i in resp["Items"]), name
        else:
            assert all(i["extra"] == S("e") for i in resp["Items"]), name
        if "RANGE" in ks:
            assert [i["pk"]["S"] for i in resp["Items"]] == [f"X#{name}#0", f"X#{name}#1"]
        page = db.query(TableName=TABLE, IndexName=name, KeyConditionExpression=expr, ExpressionAttributeValues=values,
                        Limit=1)
        rest = db.query(TableName=TABLE, IndexName=name, KeyConditionExpression=expr, ExpressionAttributeValues=values,
                        ExclusiveStartKey=page["LastEvaluatedKey"])
        assert len(page["Items"]) + len(rest["Items"]) == expected, name
    # a GSI entry follows its item: re-keyed and deleted
    db.put_item(TableName=TABLE, Item={"pk": S("X#by_org#0"), "sk": S("s"), "org_pk": S("H#other"), "org_sk": S("z")})
    resp = db.query(TableName=TABLE, IndexName="by_org", KeyConditionExpression="org_pk = :h",
                    ExpressionAttributeValues={":h": S("H#by_org")})
    assert len(resp["Items"]) == 2
    db.delete_item(TableName=TABLE, Key={"pk": S("X#by_org#1"), "sk": S("s")})
    resp = db.query(TableName=TABLE, IndexName="by_org", KeyConditionExpression="org_pk = :h",
                    ExpressionAttributeValues={":h": S("H#by_org")})
    assert len(resp["Items"]) == 1


def test_gsi_range_conditions_order_ties_and_moves(db):
    """The reconciler's by_due partition: every key operator, ties on the range value ordered by the base
    key, both directions, and an item whose range value moves (or leaves the index) found only at its new
    place. (The in-memory store bisects a sorted partition here instead of testing every entry.)"""
    due = {"u3": "2026-01-02", "u1": "2026-01-02", "u2": "2026-01-01", "u4": "2026-01-03", "u5": "2026-01-05"}
    for user, day in due.items():
        db.put_item(TableName=TABLE, Item={"pk": S(f"USER#{user}"), "sk": S("CONNECTION"), "due_pk": S("DUE"),
                                           "due_sk": S(day)})
    db.update_item(TableName=TABLE, Key={"pk": S("USER#u5"), "sk": S("CONNECTION")},
                   UpdateExpression="SET due_sk = :d", ExpressionAttributeValues={":d": S("2026-01-00")})
    db.update_item(TableName=TABLE, Key={"pk": S("USER#u4"), "sk": S("CONNECTION")},
                   UpdateExpression="REMOVE due_sk")

    def q(cond, values, **kw):
        resp = db.query(TableName=TABLE, IndexName="by_due", KeyConditionExpression="due_pk = :p" + cond,
                        ExpressionAttributeValues={":p": S("DUE"), **values}, **kw)
        return [pk.removeprefix("USER#") for pk, _ in keys(resp)]

    assert q("", {}) == ["u5", "u2", "u1", "u3"]
    assert q("", {}, ScanIndexForward=False) == ["u3", "u1", "u2", "u5"]
    assert q(" AND due_sk <= :d", {":d": S("2026-01-01")}) == ["u5", "u2"]
    assert q(" AND due_sk < :d", {":d": S("2026-01-02")}) == ["u5", "u2"]
    assert q(" AND due_sk = :d", {":d": S("2026-01-02")}) == ["u1", "u3"]
    assert q(" AND due_sk > :d", {":d": S("2026-01-01")}) == ["u1", "u3"]
    assert q(" AND due_sk >= :d", {":d": S("2026-01-01")}) == ["u2", "u1", "u3"]
    assert q(" AND due_sk BETWEEN :a AND :b", {":a": S("2026-01-01"), ":b": S("2026-01-02")}) == ["u2", "u1", "u3"]
    assert q(" AND begins_with(due_sk, :b)", {":b": S("2026-01-0")}) == ["u5", "u2", "u1", "u3"]
    assert q(" AND due_sk <= :d", {":d": S("2026-01-02")}, Limit=3) == ["u5", "u2", "u1"]
    assert db.query(TableName=TABLE, IndexName="by_due", KeyConditionExpression="due_pk = :p AND due_sk <= :d",
                    ExpressionAttributeValues={":p": S("DUE"), ":d": S("2026-01-02")}, Select="COUNT")["Count"] == 4


def test_batches_and_transactions(db):
    db.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": {"pk": S(f"b{i}"), "sk": S("s")}}}
                                              for i in range(25)]})
    got = db.batch_get_item(RequestItems={TABLE: {"Keys": [{"pk": S(f"b{i}"), "sk": S("s")} for i in range(30)],
                                                  "ConsistentRead": True}})
    assert len(got["Responses"][TABLE]) == 25 and not got.get("UnprocessedKeys")
    db.batch_write_item(RequestItems={TABLE: [{"DeleteRequest": {"Key": {"pk": S(f"b{i}"), "sk": S("s")}}}
                                              for i in range(20)]})
    assert len(db.scan(TableName=TABLE)["Items"]) == 5
    put(db, "t", "a", v=1)
    with pytest.raises(db.exceptions.TransactionCanceledException) as err:
        db.transact_write_items(TransactItems=[
            {"Put": {"TableName": TABLE, "Item": {"pk": S("t"), "sk": S("b")}}},
            {"Put": {"TableName": TABLE, "Item": {"pk": S("t"), "sk": S("a"), "v": N(2)},
                     "ConditionExpression": "attribute_not_exists(pk)"}},
        ])
    assert isinstance(err.value, ClientError)
    reasons = [r["Code"] for r in err.value.response["CancellationReasons"]]
    assert reasons == ["None", "ConditionalCheckFailed"]
    assert "Item" not in db.get_item(TableName=TABLE, Key={"pk": S("t"), "sk": S("b")})
    db.transact_write_items(TransactItems=[
        {"Put": {"TableName": TABLE, "Item": {"pk": S("t"), "sk": S("b")}}},
        {"Delete": {"TableName": TABLE, "Key": {"pk": S("t"), "sk": S("a")}}},
        {"Update": {"TableName": TABLE, "Key": {"pk": S("t"), "sk": S("c")}, "UpdateExpression": "SET v = :v",
                    "ExpressionAttributeValues": {":v": N(9)}}},
    ])
    assert keys(db.query(TableName=TABLE, KeyConditionExpression="pk = :p",
                         ExpressionAttributeValues={":p": S("t")})) == [("t", "b"), ("t", "c")]


# ---- the service's own store and limiter on both -------------------------------------------------------------

def _conn(user_id="u_1", org_id="o_1", **extra):
    from calsync.models import Connection, ConnectionState

    now = datetime(2026, 11, 23, 9, tzinfo=UTC)
    values = {"user_id": user_id, "org_id": org_id, "state": ConnectionState.CONNECTED, "provider": "google",
              "cronofy_sub": f"sub_{user_id}", "calendar_id": "cal_1", "channel_id": f"chn_{user_id}",
              "connected_at": now, "updated_at": now}
    values.update(extra)
    return Connection(**values)


def test_store_connections_lifecycle(db):
    from calsync.store import ConflictError, Store

    store = Store(db, TABLE)
    store.create_connection(_conn(), b"cipher", set())
    with pytest.raises(ConflictError):
        store.create_connection(_conn(), b"cipher", set())
    store.create_connection(_conn(), b"cipher2", {"connected"})  # replaceable state
    conn = store.get_connection("u_1")
    visited = datetime(2026, 11, 23, 10, tzinfo=UTC)
    saved = store.save_connection(conn.model_copy(update={"last_reconciled_at": visited}))
    with pytest.raises(ConflictError):
        store.save_connection(conn)  # stale revision
    assert store.get_connection("u_1").last_reconciled_at == saved.last_reconciled_at
    store.create_connection(_conn("u_2"), b"c", set())
    assert sorted(c.user_id for c in store.connections_in_org("o_1")) == ["u_1", "u_2"]
    assert store.connection_by_channel("chn_u_2").user_id == "u_2"
    assert store.channel_owner("chn_u_1") == ("u_1", "o_1")
    assert store.connection_by_sub("sub_u_1").user_id == "u_1"
    assert store.get_tokens("u_1") == b"cipher2"
    assert set(store.connections(["u_1", "u_2", "u_3"])) == {"u_1", "u_2"}
    store.delete_connection("u_1")
    assert store.get_connection("u_1") is None and store.get_tokens("u_1") is None


def test_store_oauth_state_mirror_schedule_and_refs(db):
    from calsync.models import EventRef
    from calsync.store import Store

    store = Store(db, TABLE)
    store.put_oauth_state("n1", "u_1", "o_1", 2_000_000_000)
    assert store.consume_oauth_state("n1")["user_id"] == "u_1"
    assert store.consume_oauth_state("n1") is None
    assert store.put_mirror_if_newer("o_1", "m1", 2, "{}")
    assert not store.put_mirror_if_newer("o_1", "m1", 2, "{}")
    assert not store.put_mirror_if_newer("o_1", "m1", 1, "{}")
    assert store.put_mirror_if_newer("o_1", "m1", 3, None)
    store.set_schedule_index("m1", {"u_1": "2026-11-25T15:00:00Z#m1", "u_2": "2026-11-25T15:00:00Z#m1"}, [])
    store.set_schedule_index("m2", {"u_1": "2026-10-01T15:00:00Z#m2"}, [])
    assert store.scheduled_for_user("u_1", "2026-11-01T00:00:00Z") == ["m1"]
    store.set_schedule_index("m1", {}, ["u_2"])
    assert store.scheduled_for_user("u_2", "2026-01-01T00:00:00Z") == []
    fields = {"calendar_id": "cal_1", "event_id": "sn-m1", "content_hash": "h", "start": "2026-11-25T15:00:00Z",
              "end": "2026-11-25T17:00:00Z", "all_day": False, "timezone": "Etc/UTC"}
    fields = {k: v for k, v in fields.items() if k in EventRef.model_fields}
    ref = EventRef.model_validate({"milestone_id": "m1", "user_id": "u_1", "version": 3, **fields})
    assert store.put_ref(ref)
    assert not store.put_ref(ref.model_copy(update={"version": 2}))
    mirror, scheduled, refs = store.milestone_partition("m1")
    assert mirror["version"] == 3 and list(scheduled) == ["u_1"] and list(refs) == ["u_1"]
    assert [r.milestone_id for r in store.refs_of_user("u_1")] == ["m1"]
    assert set(store.partitions_for_user(["m1", "m2"], "u_1")) == {"m1", "m2"}
    assert store.mirrors(["m1", "m9"]).keys() == {"m1"}
    assert not store.delete_ref("m1", "u_1", version=2)
    assert store.delete_refs_of_user("u_1") == 1
    assert store.refs_of_user("u_1") == []


def test_rate_limiter_bucket(db):
    from calsync.ratelimit import RateLimiter

    clock = [1000.0]
    limiter = RateLimiter(db, TABLE, 50, 500, clock=lambda: clock[0])
    granted = 0
    while limiter.acquire(1) == 0.0:
        granted += 1
    assert granted == int(limiter.burst)
    wait = limiter.acquire(1)
    assert 0 < wait <= 1 / limiter.rate + 1e-6
    limiter.penalize(10)
    assert limiter.acquire(1) > 9
    clock[0] += 3600
    assert limiter.acquire(1) == 0.0
    _ = timedelta  # (kept for symmetry with the store tests' time arithmetic)
