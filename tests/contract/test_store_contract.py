"""One contract for the storage ports (calsync.ports): the store on DynamoDB (moto) and the in-memory
store the unit tests use (tests/fakes/store.py) must give the same answers to the calls the rules
make: connections with optimistic updates, the milestone mirror and its refs, the schedule index,
due times, backfill progress and busy weeks. A behaviour the rules rely on belongs here, so a fake
that drifts from DynamoDB fails at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from calsync.clock import iso
from calsync.conflicts import Conflict
from calsync.models import BackfillProgress, Connection, ConnectionState, EventRef
from calsync.store import BusyStore, ConflictError, MilestoneOrgMismatch, Store
from tests.fakes.store import TABLE, memory_table, table_definition

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["dynamodb", "memory"])
def db(request, monkeypatch):
    if request.param == "memory":
        yield memory_table()
        return
    import boto3
    from moto import mock_aws

    for k, v in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    from localdev.moto_limits import enforce_item_size

    enforce_item_size()  # DynamoDB's 400 KB as DynamoDB counts, as the local stack runs moto
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(TableName=TABLE, **table_definition())
        yield client


@pytest.fixture
def store(db) -> Store:
    return Store(db, TABLE)


@pytest.fixture
def busy_store(db) -> BusyStore:
    return BusyStore(db, TABLE)


def conn(user_id: str = "u_1", **fields) -> Connection:
    base = {"user_id": user_id, "org_id": "org_1", "state": ConnectionState.CONNECTED, "provider": "google",
            "cronofy_sub": f"acc_{user_id}", "calendar_id": "cal_1", "connected_at": NOW - timedelta(days=3),
            "updated_at": NOW - timedelta(days=1)}
    return Connection(**(base | fields))


def ref(milestone_id: str = "m_1", user_id: str = "u_1", version: int = 1, **fields) -> EventRef:
    base = {"milestone_id": milestone_id, "user_id": user_id, "calendar_id": "cal_1",
            "event_id": f"sn-{milestone_id}", "version": version, "content_hash": f"h{version}",
            "start": "2026-12-05T10:00:00Z", "end": "2026-12-05T12:00:00Z", "all_day": False,
            "timezone": "UTC", "summary": "Install", "updated_at": NOW}
    return EventRef(**(base | fields))


# ---- connections ---------------------------------------------------------------------------------


def test_a_connection_is_stored_read_back_and_listed(store):
    store.create_connection(conn("u_1"), b"sealed", set())
    store.create_connection(conn("u_2", calendar_id="cal_2"), b"sealed", set())
    assert store.get_connection("u_1") == conn("u_1")
    assert store.get_connection("u_9") is None
    assert set(store.connections(["u_1", "u_2", "u_9"])) == {"u_1", "u_2"}
    assert store.connections(["u_2"])["u_2"].calendar_id == "cal_2"
    assert store.get_tokens("u_1") == b"sealed"


def test_a_second_connection_is_refused_unless_the_first_may_be_replaced(store):
    store.create_connection(conn(), b"a", set())
    with pytest.raises(ConflictError):
        store.create_connection(conn(), b"b", {ConnectionState.NEEDS_REAUTH.value})
    store.save_connection(store.get_connection("u_1").model_copy(update={"state": ConnectionState.NEEDS_REAUTH}))
    store.create_connection(conn(), b"b", {ConnectionState.NEEDS_REAUTH.value})
    assert store.get_tokens("u_1") == b"b"


def test_saving_a_stale_copy_is_a_conflict_and_update_connection_retries_on_the_fresh_one(store):
    store.create_connection(conn(), b"sealed", set())
    first, second = store.get_connection("u_1"), store.get_connection("u_1")
    saved = store.save_connection(first.model_copy(update={"last_error": "one"}))
    assert saved.revision == first.revision + 1
    with pytest.raises(ConflictError):
        store.save_connection(second.model_copy(update={"last_error": "two"}))
    seen = []

    def change(c: Connection) -> Connection:
        seen.append(c.last_error)
        if len(seen) == 1:  # another writer gets in between this read and the save
            store.save_connection(store.get_connection("u_1").model_copy(update={"last_error": "other"}))
        return c.model_copy(update={"timezone": "Europe/Paris"})

    updated = store.update_connection("u_1", change)
    assert seen == ["one", "other"]
    assert updated is not None and updated.timezone == "Europe/Paris" and updated.last_error == "other"
    assert store.update_connection("u_9", change) is None


# ---- due times -----------------------------------------------------------------------------------


def test_users_due_come_most_overdue_first_with_the_backlog(store):
    for user_id, checked in (("u_a", 30), ("u_b", 50), ("u_c", 1)):
        store.create_connection(conn(user_id, last_checked_at=NOW - timedelta(hours=checked)), b"s", set())
    store.create_connection(conn("u_gone", state=ConnectionState.NEEDS_REAUTH), b"s", set())  # never due
    assert store.users_due(iso(NOW), 10) == ["u_b", "u_a"]
    assert store.users_due(iso(NOW), 1) == ["u_b"]
    count, oldest = store.due_backlog(iso(NOW))
    assert count == 2 and oldest == iso(NOW - timedelta(hours=50) + timedelta(hours=23))
    assert store.due_backlog(iso(NOW - timedelta(days=10))) == (0, None)
    # a saved visit moves the user to the back by its next due time
    store.update_connection("u_b", lambda c: c.model_copy(update={"last_checked_at": NOW}))
    assert store.users_due(iso(NOW), 10) == ["u_a"]


# ---- the milestone mirror, the schedule index and refs --------------------------------------------


def test_the_mirror_keeps_the_newest_version_of_its_org(store):
    assert store.put_mirror_if_newer("org_1", "m_1", 2, '{"v": 2}')
    assert not store.put_mirror_if_newer("org_1", "m_1", 1, '{"v": 1}')  # older
    assert not store.put_mirror_if_newer("org_1", "m_1", 2, '{"v": 2}')  # repeated
    with pytest.raises(MilestoneOrgMismatch):
        store.put_mirror_if_newer("org_2", "m_1", 3, '{"v": 3}')
    assert store.put_mirror_if_newer("org_1", "m_1", 3, None)  # deleted
    mirror = store.mirrors(["m_1", "m_9"])
    assert set(mirror) == {"m_1"} and int(mirror["m_1"]["version"]) == 3 and mirror["m_1"]["deleted"]


def test_a_milestone_partition_holds_its_mirror_schedule_and_refs(store):
    store.put_mirror_if_newer("org_1", "m_1", 1, '{"v": 1}')
    store.set_schedule_index("m_1", {"u_1": "2026-12-05T10:00:00Z#m_1", "u_2": "2026-12-05T10:00:00Z#m_1"}, [])
    store.put_refs([ref(user_id="u_1"), ref(user_id="u_2")])
    mirror, scheduled, refs = store.milestone_partition("m_1")
    assert mirror is not None and int(mirror["version"]) == 1
    assert scheduled == {"u_1": "2026-12-05T10:00:00Z#m_1", "u_2": "2026-12-05T10:00:00Z#m_1"}
    assert refs == {"u_1": ref(user_id="u_1"), "u_2": ref(user_id="u_2")}
    assert store.milestone_partition("m_9") == (None, {}, {})
    mine = store.partitions_for_user(["m_1", "m_9", "m_1"], "u_2")
    assert mine["m_1"][1] == {"u_2": "2026-12-05T10:00:00Z#m_1"} and mine["m_1"][2] == {"u_2": ref(user_id="u_2")}
    assert mine["m_9"] == (None, {}, {})


def test_the_schedule_index_answers_what_a_user_has_from_a_time_on(store):
    store.set_schedule_index("m_old", {"u_1": "2026-11-01T10:00:00Z#m_old"}, [])
    store.set_schedule_index("m_new", {"u_1": "2026-12-10T10:00:00Z#m_new"}, [])
    store.set_schedule_index("m_other", {"u_2": "2026-12-10T10:00:00Z#m_other"}, [])
    assert store.scheduled_for_user("u_1", "2026-11-15T00:00:00Z") == ["m_new"]
    store.set_schedule_index("m_new", {}, ["u_1"])
    assert store.scheduled_for_user("u_1", "2026-11-15T00:00:00Z") == []
    assert store.milestone_partition("m_new")[1] == {}


def test_a_users_longest_assignment_only_grows_and_short_ones_are_not_written(store):
    from datetime import timedelta

    from calsync.repositories.milestones import SHORT_ASSIGNMENT

    assert store.longest_assignments(["u_1", "u_2"]) == {"u_1": SHORT_ASSIGNMENT, "u_2": SHORT_ASSIGNMENT}
    store.note_assignment_span(["u_1", "u_2"], timedelta(days=12))
    store.note_assignment_span(["u_1"], timedelta(days=10))  # shorter: the record stays
    store.note_assignment_span(["u_2"], timedelta(days=3))  # short: nothing written
    store.note_assignment_span(["u_2"], timedelta(days=20, hours=1))
    assert store.longest_assignments(["u_1", "u_2", "u_3"]) == {
        "u_1": timedelta(days=12), "u_2": timedelta(days=20, hours=1), "u_3": SHORT_ASSIGNMENT}


def test_refs_never_move_back_and_a_versioned_delete_spares_a_newer_write(store):
    assert store.put_ref(ref(version=2))
    assert not store.put_ref(ref(version=1))  # an older write landing late is not recorded
    assert store.get_ref("m_1", "u_1").version == 2
    assert store.put_ref(ref(version=2, user_moved_start="2026-12-06T10:00:00Z",
                             user_moved_end="2026-12-06T12:00:00Z"))  # same version: updated
    assert store.get_ref("m_1", "u_1").user_moved_start == "2026-12-06T10:00:00Z"
    assert not store.delete_ref("m_1", "u_1", 1)  # a delete planned at v1 spares the v2 write
    assert store.get_ref("m_1", "u_1") is not None
    assert store.delete_ref("m_1", "u_1", 2)
    assert store.get_ref("m_1", "u_1") is None
    assert store.delete_ref("m_1", "u_1", 2)  # already gone: fine


def test_refs_of_a_user_are_listed_across_milestones(store):
    store.put_refs([ref("m_1"), ref("m_2"), ref("m_3", user_id="u_2")])
    assert sorted(r.milestone_id for r in store.refs_of_user("u_1")) == ["m_1", "m_2"]
    store.delete_ref("m_2", "u_1")
    assert [r.milestone_id for r in store.refs_of_user("u_1")] == ["m_1"]


# ---- backfill --------------------------------------------------------------------------------------


def test_backfill_progress_counts_only_the_current_run(store):
    store.put_backfill("u_1", "run_1", BackfillProgress(done=0, total=5, status="running"), started_at=1000.5)
    store.put_chunks("run_1", [["m_1", "m_2"], ["m_3"]], 2_000_000_000)
    assert store.get_chunk("run_1", 1) == ["m_3"]
    with pytest.raises(LookupError):
        store.get_chunk("run_1", 2)
    store.add_backfill_done("u_1", "run_1", 2)
    store.add_backfill_done("u_1", "run_old", 7)  # a stale run counts nothing
    progress = store.get_backfill("u_1")
    assert progress["run_id"] == "run_1" and int(progress["done"]) == 2 and int(progress["total"]) == 5
    assert store.get_backfill("u_9") is None


# ---- busy weeks -------------------------------------------------------------------------------------


def test_busy_weeks_are_written_read_and_deleted_per_week(busy_store):
    periods = {"k1": "2026-11-30T10:00:00Z/2026-11-30T11:00:00Z"}
    busy_store.write_weeks("u_1", "org_1", {"2026-11-30": periods, "2026-12-07": {"k2": "2026-12-07/2026-12-08"}},
                           "2026-12-01T12:00:00Z", {"2026-11-30": 2_000_000_000, "2026-12-07": 2_000_000_000})
    weeks = busy_store.weeks_of_user("u_1")
    assert set(weeks) == {"2026-11-30", "2026-12-07"} and weeks["2026-11-30"]["periods"] == periods
    busy_store.write_weeks("u_1", "org_1", {"2026-12-07": {}}, "2026-12-01T13:00:00Z", {})
    assert set(busy_store.weeks_of_user("u_1")) == {"2026-11-30"}
    busy_store.touch("u_1", "org_1", "2026-12-01T14:00:00Z")
    busy_store.touch("u_2", "org_1", "2026-12-01T09:00:00Z")
    found = busy_store.get_many(["u_1", "u_2", "u_9"], ["2026-11-30", "2026-12-07"])
    assert set(found) == {"u_1", "u_2"}
    assert found["u_1"] == {"org_id": "org_1", "updated_at": "2026-12-01T14:00:00Z",
                            "periods": list(periods.values())}
    assert found["u_2"]["periods"] == []


def conflict(user_id: str = "u_1", milestone_id: str = "m_1", state: str = "open", conflict_id: str = "cfl_1",
             **fields) -> Conflict:
    base = {"org_id": "org_1", "user_id": user_id, "milestone_id": milestone_id, "conflict_id": conflict_id,
            "state": state, "milestone_version": 3, "span": (NOW, NOW + timedelta(hours=4)),
            "overlap": (NOW + timedelta(hours=1), NOW + timedelta(hours=2)), "detected_at": NOW}
    return Conflict(**(base | fields))


def test_a_conflict_is_recorded_once_changed_only_from_the_state_read_and_forgotten_by_its_id(store):
    assert store.add_conflict(conflict(state="detecting"))
    assert not store.add_conflict(conflict(conflict_id="cfl_2", state="detecting"))  # the pair has one already
    assert store.replace_conflict(conflict(), "detecting")
    assert not store.replace_conflict(conflict(why="busy_time_gone", state="resolving"), "detecting")  # it is open
    assert not store.replace_conflict(conflict(conflict_id="cfl_2", state="resolving"), "open")  # another conflict
    assert store.conflicts_of_user("org_1", "u_1") == {"m_1": conflict()}
    assert store.replace_conflict(conflict(why="busy_time_gone", state="resolving"), "open")
    assert not store.delete_conflict(conflict(conflict_id="cfl_2"))
    assert store.conflicts_of_user("org_1", "u_1")["m_1"].why == "busy_time_gone"
    assert store.delete_conflict(conflict())
    assert store.conflicts_of_user("org_1", "u_1") == {}


def test_conflicts_are_read_by_user_by_milestone_and_by_org_and_never_across_orgs(store):
    for user_id, milestone_id in (("u_1", "m_1"), ("u_1", "m_2"), ("u_1#x", "m_1"), ("u_2", "m_1")):
        assert store.add_conflict(conflict(user_id, milestone_id))
    assert store.add_conflict(conflict("u_1", "m_3", org_id="org_2"))
    assert sorted(store.conflicts_of_user("org_1", "u_1")) == ["m_1", "m_2"]  # not u_1#x's
    assert sorted(store.conflicts_of_milestone("org_1", "m_1", ["u_1", "u_2", "u_3"])) == ["u_1", "u_2"]
    assert sorted((c.user_id, c.milestone_id) for c in store.conflicts_of_org("org_1")) == [
        ("u_1", "m_1"), ("u_1", "m_2"), ("u_1#x", "m_1"), ("u_2", "m_1")]
    assert [c.milestone_id for c in store.conflicts_of_org("org_2")] == ["m_3"]


def count(db, user_id: str = "u_1") -> int:
    return db.query(TableName=TABLE, KeyConditionExpression="pk = :u", Select="COUNT",
                    ExpressionAttributeValues={":u": {"S": f"USER#{user_id}"}})["Count"]


def test_a_week_too_large_for_one_item_is_split_by_size_and_read_whole(busy_store, db):
    """Issue 20, finding 5: a week's map over one item (DynamoDB's 400 KB, as the local stack now enforces)
    is split over further items, read back whole by both reads, replaced whole and deleted whole."""
    from calsync.repositories.busy import ONE_ITEM, periods_size

    def at(i: int, second: int) -> str:  # 9,000 distinct one-second blocks on 2026-12-08
        return f"2026-12-08T{i // 1200:02d}:{i // 20 % 60:02d}:{i % 20 * 2 + second:02d}Z"

    big = {f"~{i}": f"{at(i, 0)}/{at(i, 1)}" for i in range(9_000)}
    assert periods_size(big) > ONE_ITEM
    busy_store.write_weeks("u_1", "org_1", {"2026-12-07": big}, "2026-12-01T12:00:00Z", {"2026-12-07": 2_000_000_000})
    assert count(db) == 2
    weeks = busy_store.weeks_of_user("u_1")
    assert weeks["2026-12-07"]["periods"] == big
    assert sorted(busy_store.get_many(["u_1"], ["2026-12-07"])["u_1"]["periods"]) == sorted(big.values())
    # A reader that finds the week's further item gone (replaced between its two reads) is unsure, not free
    generation = weeks["2026-12-07"]["generation"]
    db.delete_item(TableName=TABLE, Key={"pk": {"S": "USER#u_1"}, "sk": {"S": f"BUSY#2026-12-07#{generation}#1"}})
    assert busy_store.get_many(["u_1"], ["2026-12-07"])["u_1"]["unsure"] is True
    small = {"k1": "2026-12-08T10:00:00Z/2026-12-08T11:00:00Z"}
    busy_store.write_weeks("u_1", "org_1", {"2026-12-07": small}, "2026-12-01T13:00:00Z", {"2026-12-07": 2_000_000_000},
                           previous=weeks, unsure={"2026-12-07"})
    assert busy_store.get_many(["u_1"], ["2026-12-07"])["u_1"] == {
        "org_id": "org_1", "updated_at": "2026-12-01T13:00:00Z", "periods": list(small.values()), "unsure": True}
    assert count(db) == 1  # the replaced write's further items are gone (here, already)
    busy_store.write_weeks("u_1", "org_1", {"2026-12-07": big}, "2026-12-01T14:00:00Z", {"2026-12-07": 2_000_000_000})
    busy_store.delete_user("u_1")
    assert count(db) == 0
