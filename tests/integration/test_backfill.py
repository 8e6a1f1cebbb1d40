"""The backfill workflow: the real ASL under moto's Step Functions parser, Lambda tasks on the real
handlers, the emulator as Cronofy."""

import math

import boto3

from calsync import wiring
from calsync.milestones import event_id_for
from tests.helpers import cal_id, connect, in_days, managed_events, milestone, push


def backfill_status(stack, session):
    return session.get(stack.url("/v1/calendar/connection")).json()


def execution_statuses(stack):
    return sorted(e["status"] for e in stack.executions())


def test_window_is_the_last_30_days_and_everything_ahead(stack, teammate):
    assert push(stack,
                milestone("ms_31", 1, ["u_miguel"], in_days(-31)),
                milestone("ms_29", 1, ["u_miguel"], in_days(-29)),
                milestone("ms_future", 1, ["u_miguel"], in_days(200)),
                milestone("ms_other", 1, ["u_someone_else"], in_days(2))) == set()
    cal = connect(stack, teammate["session"], "microsoft", teammate["account"])
    assert set(managed_events(stack, cal)) == {event_id_for("ms_29"), event_id_for("ms_future")}
    status = backfill_status(stack, teammate["session"])
    assert status["backfill"] == {"status": "succeeded", "done": 2, "total": 2, "error": None}
    assert status["last_sync_at"] is not None
    assert execution_statuses(stack) == ["SUCCEEDED"]


def test_a_throttled_chunk_is_retried(stack, teammate):
    assert push(stack, *[milestone(f"ms_{i}", 1, ["u_miguel"], in_days(1 + i % 30)) for i in range(10)]) == set()
    assert push(stack, *[milestone(f"ms_b{i}", 1, ["u_miguel"], in_days(1 + i % 30)) for i in range(10)]) == set()
    # The first /v1/batch is answered 429 with a Retry-After too long to sleep on inside a Lambda: the
    # shared limiter holds every caller back for those seconds and the state machine retries the chunk
    stack.emulator.add_fault(path_prefix="/v1/batch", status=429, retry_after=6, count=1)
    stack.emulator.clear_request_log()
    cal = connect(stack, teammate["session"], "microsoft", teammate["account"])
    assert len(managed_events(stack, cal)) == 20
    assert stack.emulator.count_requests(method="POST", path_prefix="/v1/batch") == 2  # throttled + retried
    assert execution_statuses(stack) == ["SUCCEEDED"]


def test_a_chunk_that_fails_for_good_shows_on_the_connection(stack, teammate):
    assert push(stack, *[milestone(f"ms_{i}", 1, ["u_miguel"], in_days(1 + i)) for i in range(5)]) == set()
    stack.emulator.add_fault(path_prefix="/v1/batch", status=422, count=50)
    from localdev import browser
    browser.connect(teammate["session"], stack.base_url, "microsoft", teammate["account"]["profile_id"])
    stack.drain()
    status = backfill_status(stack, teammate["session"])
    assert status["state"] == "connected"  # the connection still works for new changes
    assert status["backfill"]["status"] == "failed" and status["backfill"]["error"] == "BackfillChunkFailed"
    assert "backfill failed" in status["last_error"]
    assert execution_statuses(stack) == ["FAILED"]
    # Once Cronofy accepts writes again, the next change is pushed
    stack.emulator.clear_faults()
    assert push(stack, milestone("ms_new", 1, ["u_miguel"])) == set()
    assert event_id_for("ms_new") in managed_events(stack, status["calendar"]["id"])


def test_running_the_backfill_twice_changes_nothing(stack, teammate):
    assert push(stack, *[milestone(f"ms_{i}", 1, ["u_miguel"], in_days(1 + i)) for i in range(7)]) == set()
    cal = connect(stack, teammate["session"], "microsoft", teammate["account"])
    before = managed_events(stack, cal)
    stack.emulator.clear_request_log()
    service = wiring.connection_service()
    service.on_calendar_selected(service.store.get_connection("u_miguel"), None)
    stack.drain()
    assert stack.emulator.count_requests(path_prefix="/v1/batch") == 0
    assert managed_events(stack, cal) == before
    assert execution_statuses(stack) == ["SUCCEEDED", "SUCCEEDED"]


def test_a_milestone_changed_during_the_backfill_ends_at_its_newest_version(stack, teammate, monkeypatch):
    assert push(stack, milestone("ms_race", 1, ["u_miguel"], in_days(3))) == set()
    engine = wiring.sync_engine()
    original = engine._execute
    state = {"interleaved": False}

    def execute(writes, connections, result):
        # The backfill has read version 1 and is about to write it: version 2 arrives and is pushed first.
        if not state["interleaved"] and any(w.version == 1 for w in writes):
            state["interleaved"] = True
            assert push(stack, milestone("ms_race", 2, ["u_miguel"], in_days(6))) == set()
        return original(writes, connections, result)

    monkeypatch.setattr(engine, "_execute", execute)
    cal = connect(stack, teammate["session"], "microsoft", teammate["account"])
    assert state["interleaved"]
    event = managed_events(stack, cal)[event_id_for("ms_race")]
    assert event["start"] == in_days(6).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_switching_calendars_moves_every_event(stack, jane, jane_cal):
    assert push(stack, *[milestone(f"ms_{i}", 1, ["u_jane"], in_days(1 + i)) for i in range(12)]) == set()
    assert len(managed_events(stack, jane_cal)) == 12
    new_cal = cal_id(jane["work"], "jane.smith@example.com")
    resp = jane["session"].put(stack.url("/v1/calendar/connection"), json={"calendar_id": new_cal})
    assert resp.status_code == 200 and resp.json()["state"] == "syncing"
    stack.drain()
    assert managed_events(stack, jane_cal) == {}
    assert set(managed_events(stack, new_cal)) == {event_id_for(f"ms_{i}") for i in range(12)}
    status = backfill_status(stack, jane["session"])
    assert status["state"] == "connected" and status["calendar"]["name"] == "jane.smith@example.com"
    # Later changes follow to the new calendar
    assert push(stack, milestone("ms_0", 2, ["u_jane"], in_days(20))) == set()
    assert managed_events(stack, new_cal)[event_id_for("ms_0")]["start"] == in_days(20).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def test_state_never_carries_milestone_bodies(stack, teammate):
    n = 120
    for i in range(0, n, 10):
        assert push(stack, *[milestone(f"ms_{j}", 1, ["u_miguel"], in_days(1 + j % 50), notes="x" * 2000)
                             for j in range(i, i + 10)]) == set()
    stack.emulator.clear_request_log()
    connect(stack, teammate["session"], "microsoft", teammate["account"])
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    execution = stack.executions()[0]
    history = sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)["events"]
    biggest = max(len(str(e)) for e in history)
    assert biggest < 4000  # chunk numbers only: 120 milestones x 2 KB of notes never enter the state
    assert stack.emulator.count_requests(method="POST", path_prefix="/v1/batch") == math.ceil(n / 50)


def test_a_push_writing_while_the_user_switches_calendars_follows_them(stack, jane, jane_cal, monkeypatch):
    """The switch commits while a milestone push is writing with the connection it read before it: the push
    lands on the calendar the user just left and records its ref there (the 20,000-user rough run: an
    event left behind). The push checks the connections it wrote for and moves the event in its next
    round: nothing of ours stays on the old calendar, the ref names the new one."""
    new_cal = cal_id(jane["work"], "jane.smith@example.com")
    engine = wiring.sync_engine()
    original = engine._send
    state = {"switched": False}

    def send(client, conn, chunk, result, written):
        if not state["switched"]:
            state["switched"] = True  # the picker's switch commits now, between our read and our write
            wiring.store().update_connection("u_jane", lambda c: c.model_copy(update={
                "calendar_id": new_cal, "calendar_name": "jane.smith@example.com"}))
        return original(client, conn, chunk, result, written)

    monkeypatch.setattr(engine, "_send", send)
    assert push(stack, milestone("ms_race", 1, ["u_jane"], in_days(3))) == set()
    assert state["switched"]
    assert event_id_for("ms_race") not in managed_events(stack, jane_cal)
    assert managed_events(stack, new_cal)[event_id_for("ms_race")]["start"] == in_days(3).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    assert wiring.store().get_ref("ms_race", "u_jane").calendar_id == new_cal
