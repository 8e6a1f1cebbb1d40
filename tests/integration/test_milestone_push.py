"""Milestone push: content, ordering, reassignment, removal, batching and failure isolation."""

import itertools
import math

from calsync import wiring
from calsync.milestones import MANAGED_LINE, event_id_for
from tests.helpers import cal_id, deleted, in_days, managed_events, milestone, push


def test_event_content_follows_the_contract(stack, jane_cal):
    start = in_days(5)
    assert push(stack, milestone("ms_1", 1, ["u_jane"], start)) == set()
    event = managed_events(stack, jane_cal)[event_id_for("ms_1")]
    assert event["summary"] == "Site Survey - Ana Ruiz"
    for text in ("Ana Ruiz", "+1 555 0100", "ana@example.com", "12 Main St, Fresno, CA", "Gate code 4411",
                 "https://app.solarnexus.com/projects/ms_1", MANAGED_LINE):
        assert text in event["description"]
    assert event["location"]["description"] == "12 Main St, Fresno, CA"
    assert event["start"] == start.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert event["start_tzid"] == "America/Los_Angeles" and event["all_day"] is False


def test_all_day_milestone_is_written_as_dates(stack, jane_cal):
    day = in_days(10).date()
    msg = milestone("ms_allday", 1, ["u_jane"], day.isoformat(), end=day.isoformat(), all_day=True)
    assert push(stack, msg) == set()
    event = managed_events(stack, jane_cal)[event_id_for("ms_allday")]
    assert event["all_day"] is True
    assert (event["start"], event["end"]) == (day.isoformat(), (day.fromordinal(day.toordinal() + 1)).isoformat())


def test_milestone_crossing_a_dst_change_keeps_its_utc_times(stack, jane_cal):
    # US daylight saving starts 2027-03-14 at 02:00 local (10:00Z): 09:00Z-12:00Z spans it.
    msg = milestone("ms_dst", 1, ["u_jane"], "2027-03-14T09:00:00Z", end="2027-03-14T12:00:00Z")
    assert push(stack, msg) == set()
    event = managed_events(stack, jane_cal)[event_id_for("ms_dst")]
    assert (event["start"], event["end"]) == ("2027-03-14T09:00:00Z", "2027-03-14T12:00:00Z")
    assert event["start_tzid"] == event["end_tzid"] == "America/Los_Angeles"


def test_milliseconds_from_the_core_platform_are_trimmed_not_rejected(stack, jane_cal):
    msg = milestone("ms_ms", 1, ["u_jane"], "2027-01-05T15:00:00.250Z", end="2027-01-05T16:00:00.750Z")
    assert push(stack, msg) == set()
    event = managed_events(stack, jane_cal)[event_id_for("ms_ms")]
    assert (event["start"], event["end"]) == ("2027-01-05T15:00:00Z", "2027-01-05T16:00:00Z")


def test_any_delivery_order_ends_in_the_same_calendar(stack, jane_cal):
    versions = [milestone("ms_x", v, ["u_jane"], in_days(v)) for v in (1, 2, 3)]
    finals = set()
    for n, order in enumerate(itertools.permutations(versions)):
        mid = f"ms_order_{n}"
        for msg in order:
            msg = {**msg, "milestone": {**msg["milestone"], "milestone_id": mid}}
            assert push(stack, msg) == set()
        finals.add(managed_events(stack, jane_cal)[event_id_for(mid)]["start"])
    assert finals == {in_days(3).strftime("%Y-%m-%dT%H:%M:%SZ")}


def test_stale_and_repeated_messages_change_nothing(stack, jane_cal):
    v2 = milestone("ms_s", 2, ["u_jane"], in_days(4))
    assert push(stack, v2) == set()
    stack.emulator.clear_request_log()
    assert push(stack, v2, v2) == set()  # duplicate delivery, twice in one batch
    assert push(stack, milestone("ms_s", 1, ["u_jane"], in_days(9))) == set()  # stale
    assert stack.emulator.request_log == []
    assert managed_events(stack, jane_cal)[event_id_for("ms_s")]["start"] == in_days(4).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def test_reassignment_between_two_connected_users(stack, jane_cal, miguel_cal):
    assert push(stack, milestone("ms_r", 1, ["u_jane"])) == set()
    assert event_id_for("ms_r") in managed_events(stack, jane_cal)
    assert push(stack, milestone("ms_r", 2, ["u_miguel"])) == set()
    assert event_id_for("ms_r") not in managed_events(stack, jane_cal)
    assert event_id_for("ms_r") in managed_events(stack, miguel_cal)
    # Both assigned: both calendars
    assert push(stack, milestone("ms_r", 3, ["u_miguel", "u_jane"])) == set()
    assert event_id_for("ms_r") in managed_events(stack, jane_cal)
    assert event_id_for("ms_r") in managed_events(stack, miguel_cal)


def test_unscheduled_cancelled_and_deleted_milestones_leave_every_calendar(stack, jane_cal, miguel_cal):
    for mid in ("ms_u", "ms_c", "ms_d"):
        assert push(stack, milestone(mid, 1, ["u_jane", "u_miguel"])) == set()
    assert push(stack,
                _unscheduled("ms_u", 2, ["u_jane", "u_miguel"]),
                milestone("ms_c", 2, ["u_jane", "u_miguel"], status="cancelled"),
                deleted("ms_d", 2)) == set()
    for cal in (jane_cal, miguel_cal):
        assert not {event_id_for(m) for m in ("ms_u", "ms_c", "ms_d")} & set(managed_events(stack, cal))


def _unscheduled(mid, version, assignees):
    msg = milestone(mid, version, assignees, status="unscheduled")
    msg["milestone"].update(start=None, end=None)
    return msg


def test_a_batch_of_ten_changes_is_one_cronofy_request(stack, jane_cal):
    stack.emulator.clear_request_log()
    assert push(stack, *[milestone(f"ms_b{i}", 1, ["u_jane"], in_days(i + 1)) for i in range(10)]) == set()
    assert stack.emulator.count_requests(method="POST", path_prefix="/v1/batch") == 1
    assert stack.emulator.count_requests(path_prefix="/v1/calendars") == 0
    assert len(managed_events(stack, jane_cal)) == 10


def test_a_refused_write_fails_only_its_own_message(stack, jane_cal, miguel_cal):
    stack.emulator.add_fault(path_prefix="/v1/batch", status=422, count=1)  # one user's batch is refused
    messages = {"ms_no": milestone("ms_no", 1, ["u_miguel"]), "ms_ok": milestone("ms_ok", 1, ["u_jane"])}
    event = stack.sqs_event("MilestoneEventsQueue", [*messages.values(), "{not json"])
    result = stack.invoke("MilestonePushFunction", event)
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    ids = {mid: r["messageId"] for mid, r in zip([*messages, "malformed"], event["Records"], strict=True)}
    missing = [mid for mid, cal in (("ms_no", miguel_cal), ("ms_ok", jane_cal))
               if event_id_for(mid) not in managed_events(stack, cal)]
    assert len(missing) == 1  # the other user's write landed
    assert failed == {ids[missing[0]], ids["malformed"]}


def test_a_calendar_deleted_at_the_provider_asks_for_another_calendar(stack, jane, jane_cal):
    """Writes to a deleted (or read-only) calendar are refused every time: instead of retrying them
    into the DLQ, the connection asks the user to choose a calendar again, and says why; the choice's
    backfill puts every event on the new calendar."""
    stack.emulator.update_calendar(jane_cal, deleted=True)
    assert push(stack, milestone("ms_gone", 1, ["u_jane"])) == set()  # not retried
    status = jane["session"].get(stack.url("/v1/calendar/connection")).json()
    assert (status["state"], status["last_error"]) == ("pending_calendar", "calendar_not_writable")
    changes = [m for m in stack.queue_messages("CalendarChangesQueue") if m["user_id"] == "u_jane"]
    assert (changes[-1]["state"], changes[-1]["reason"]) == ("pending_calendar", "calendar_not_writable")
    admin = stack.browser("u_admin", "org_sunbright", roles=["admin"])
    row = next(m for m in admin.get(stack.url("/v1/orgs/org_sunbright/calendar-health")).json()["members"]
               if m["user_id"] == "u_jane")
    assert row["last_error"]["reason"] == "calendar_not_writable" and row["stale"] is True
    # She picks her other writable calendar: everything is written there
    primary = cal_id(jane["work"], "jane.smith@example.com")
    calendars = jane["session"].get(stack.url("/v1/calendar/calendars")).json()["calendars"]
    assert [c["id"] for c in calendars] == [primary]  # the deleted one is no longer offered
    resp = jane["session"].put(stack.url("/v1/calendar/connection"), json={"calendar_id": primary})
    assert resp.status_code == 200, resp.text
    stack.drain()
    status = jane["session"].get(stack.url("/v1/calendar/connection")).json()
    assert (status["state"], status["last_error"]) == ("connected", None)
    assert event_id_for("ms_gone") in managed_events(stack, primary)
    assert stack.queue_messages("MilestoneEventsDLQ") == []


def test_a_message_that_keeps_failing_ends_in_the_dlq(stack, jane_cal):
    stack.send("MilestoneEventsQueue", {"type": "milestone.upserted", "message_id": "x", "org_id": "o"})
    stack.send("MilestoneEventsQueue", milestone("ms_fine", 1, ["u_jane"]))
    stack.drain()
    assert len(stack.queue_messages("MilestoneEventsDLQ")) == 1
    assert event_id_for("ms_fine") in managed_events(stack, jane_cal)


def test_throttling_fails_the_messages_for_a_later_retry(stack, jane_cal):
    stack.emulator.add_fault(path_prefix="/v1/batch", status=429, retry_after=6, count=1)
    msg = milestone("ms_t", 1, ["u_jane"])
    stack.send("MilestoneEventsQueue", msg)
    stack.drain()  # first delivery throttled and handed back for ~6 s (not slept on), then it succeeds
    assert event_id_for("ms_t") in managed_events(stack, jane_cal)
    assert stack.queue_messages("MilestoneEventsDLQ") == []


def test_unconnected_assignee_is_mirrored_and_backfilled_on_connect(stack, jane, jane_cal, teammate):
    assert push(stack, milestone("ms_later", 1, ["u_miguel"])) == set()
    assert stack.emulator.count_requests(path_prefix="/v1/batch") == 0  # Miguel is not connected
    from tests.helpers import connect
    miguel_cal = connect(stack, teammate["session"], "microsoft", teammate["account"])
    assert event_id_for("ms_later") in managed_events(stack, miguel_cal)


def test_writes_per_request_is_ceil_n_over_50(stack, jane, teammate):
    n = 120
    msgs = [milestone(f"ms_n{i}", 1, ["u_miguel"], in_days(1 + i % 40)) for i in range(n)]
    for i in range(0, n, 10):
        assert push(stack, *msgs[i:i + 10]) == set()
    stack.emulator.clear_request_log()
    from tests.helpers import connect
    miguel_cal = connect(stack, teammate["session"], "microsoft", teammate["account"])
    assert len(managed_events(stack, miguel_cal)) == n
    assert stack.emulator.count_requests(method="POST", path_prefix="/v1/batch") == math.ceil(n / 50)


def test_mirror_is_kept_for_everyone(stack):
    assert push(stack, milestone("ms_m", 3, ["u_nobody"])) == set()
    mirror, scheduled, refs = wiring.store().milestone_partition("ms_m")
    assert int(mirror["version"]) == 3 and set(scheduled) == {"u_nobody"} and refs == {}


def test_a_cancellation_the_schema_allows_always_takes_the_event_off(stack, jane_cal):
    """`start: null` or a status other than scheduled means "on no calendar", whatever else the message
    carries: such a message is never refused (which would leave the old version on the calendar)."""
    assert push(stack, milestone("ms_x", 1, ["u_jane"]), milestone("ms_y", 1, ["u_jane"])) == set()
    cancelled = milestone("ms_x", 2, ["u_jane"], status="cancelled")
    cancelled["milestone"].update(start=None, end=None, timezone="")
    unscheduled = milestone("ms_y", 2, ["u_jane"], status="unscheduled")
    unscheduled["milestone"]["start"] = None  # end left as it was
    assert push(stack, cancelled, unscheduled) == set()
    assert not {event_id_for("ms_x"), event_id_for("ms_y")} & set(managed_events(stack, jane_cal))


def test_a_deletion_wins_over_an_upsert_of_the_same_version(stack, jane_cal):
    assert push(stack, milestone("ms_same", 4, ["u_jane"])) == set()
    assert push(stack, deleted("ms_same", 4)) == set()
    assert event_id_for("ms_same") not in managed_events(stack, jane_cal)
    # and the upsert of that version, delivered again, does not bring it back
    assert push(stack, milestone("ms_same", 4, ["u_jane"])) == set()
    assert event_id_for("ms_same") not in managed_events(stack, jane_cal)


def test_a_version_sent_as_text_is_refused_not_guessed(stack, jane_cal):
    wrong = milestone("ms_text", 1, ["u_jane"])
    wrong["milestone"]["version"] = "2"
    assert len(push(stack, wrong)) == 1
    assert event_id_for("ms_text") not in managed_events(stack, jane_cal)


def test_a_refusal_from_the_calendar_just_left_does_not_mark_the_chosen_one(stack, jane, jane_cal):
    service = wiring.connection_service()
    on_installs = service.store.get_connection("u_jane")
    primary = cal_id(jane["work"], "jane.smith@example.com")
    assert jane["session"].put(stack.url("/v1/calendar/connection"), json={"calendar_id": primary}).status_code == 200
    service.mark_calendar_unwritable(on_installs, "calendar_not_writable")  # a sync still holding Installs
    status = jane["session"].get(stack.url("/v1/calendar/connection")).json()
    assert status["state"] in ("syncing", "connected") and status["calendar"]["id"] == primary


def test_a_switch_to_a_calendar_that_refuses_writes_leaves_the_old_one_as_it_was(stack, jane, jane_cal):
    assert push(stack, milestone("ms_keep", 1, ["u_jane"])) == set()
    primary = cal_id(jane["work"], "jane.smith@example.com")
    assert jane["session"].put(stack.url("/v1/calendar/connection"), json={"calendar_id": primary}).status_code == 200
    stack.emulator.update_calendar(primary, readonly=True)  # before the backfill writes there
    stack.drain()
    status = jane["session"].get(stack.url("/v1/calendar/connection")).json()
    assert (status["state"], status["last_error"]) == ("pending_calendar", "calendar_not_writable")
    assert event_id_for("ms_keep") in managed_events(stack, jane_cal)  # not emptied: nowhere else to be


def test_choosing_the_same_calendar_again_brings_it_up_to_date(stack, jane, jane_cal):
    assert push(stack, milestone("ms_stays", 1, ["u_jane"]), milestone("ms_goes", 1, ["u_jane"])) == set()
    stack.emulator.update_calendar(jane_cal, readonly=True)
    assert push(stack, milestone("ms_new", 1, ["u_jane"])) == set()  # refused: choose a calendar again
    assert jane["session"].get(stack.url("/v1/calendar/connection")).json()["state"] == "pending_calendar"
    assert push(stack, milestone("ms_goes", 2, ["u_jane"], status="cancelled")) == set()  # nothing written now
    stack.emulator.update_calendar(jane_cal, readonly=False)  # the owner gives write access back
    resp = jane["session"].put(stack.url("/v1/calendar/connection"), json={"calendar_id": jane_cal})
    assert resp.status_code == 200, resp.text
    stack.drain()
    events = managed_events(stack, jane_cal)
    assert {event_id_for("ms_stays"), event_id_for("ms_new")} <= set(events)
    assert event_id_for("ms_goes") not in events
    assert jane["session"].get(stack.url("/v1/calendar/connection")).json()["state"] == "connected"
