"""Issue 10: our own jobs replayed (SQS duplicates, a re-queued job, a DLQ redrive) never act on a
connection they were not issued for; a shared calendar account never loses another user's events."""

from datetime import UTC, datetime

from calsync import wiring
from localdev import browser
from tests.helpers import cal_id, next_second


def now_z() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def managed_event(user_id, calendar_id, event_id):
    """One SolarNexus event written with the user's own stored tokens."""
    service = wiring.connection_service()
    client = service.user_client(service.store.get_connection(user_id))
    client.upsert_event(calendar_id, {
        "event_id": event_id, "summary": "Site Survey - Ana Ruiz",
        "start": {"time": "2026-12-20T15:00:00Z", "tzid": "America/Los_Angeles"},
        "end": {"time": "2026-12-20T17:00:00Z", "tzid": "America/Los_Angeles"},
    })


def live_managed(stack, calendar_id):
    stack.settle()  # accepted writes land (Cronofy applies them asynchronously)
    return sorted(e["event_id"] for e in stack.emulator.events(calendar_id) if e["managed"] and not e["deleted"])


def state_of(stack, session):
    return session.get(stack.url("/v1/calendar/connection")).json()["state"]


def connect_miguel(stack, teammate):
    result = browser.connect(teammate["session"], stack.base_url, "microsoft", teammate["account"]["profile_id"])
    assert result["calendar_sync"] == "connected", result
    stack.drain()
    assert state_of(stack, teammate["session"]) == "connected"


def test_a_replayed_disconnect_job_does_not_touch_the_next_connection(stack, teammate):
    calendar = cal_id(teammate["account"], "Calendar")
    connect_miguel(stack, teammate)
    managed_event("u_miguel", calendar, "ms_old")
    # Miguel disconnects: the cleanup job is captured before it runs, then delivered
    assert teammate["session"].delete(stack.url("/v1/calendar/connection")).status_code == 202
    [job] = stack.queue_messages("CleanupQueue")
    assert job["connection_id"]
    stack.send("CleanupQueue", job)
    stack.drain()
    assert state_of(stack, teammate["session"]) == "not_connected"
    assert live_managed(stack, calendar) == []
    # He connects again and gets a new event
    connect_miguel(stack, teammate)
    managed_event("u_miguel", calendar, "ms_new")
    sub = wiring.connection_service().store.get_connection("u_miguel").cronofy_sub
    # When the old job is delivered again (an SQS duplicate, a DLQ redrive)
    stack.emulator.clear_request_log()
    stack.send("CleanupQueue", job)
    stack.drain()
    # Then the new connection, its events and its authorization are untouched, with no Cronofy call
    assert state_of(stack, teammate["session"]) == "connected"
    assert live_managed(stack, calendar) == ["ms_new"]
    assert stack.emulator.account_state(sub)["revoked"] is False
    assert stack.emulator.request_log == []
    assert stack.queue_messages("CleanupDLQ") == []


def test_a_requeued_disconnect_job_without_a_connection_id_only_cleans_a_disconnecting_connection(stack, teammate):
    calendar = cal_id(teammate["account"], "Calendar")
    connect_miguel(stack, teammate)
    managed_event("u_miguel", calendar, "ms_1")
    # The reconciler's re-queued job names no connection: a connected user is left alone
    wiring.publisher().request_disconnect("org_sunbright", "u_miguel")
    stack.drain()
    assert state_of(stack, teammate["session"]) == "connected"
    assert live_managed(stack, calendar) == ["ms_1"]
    # ...but it finishes a disconnect that is stuck
    assert teammate["session"].delete(stack.url("/v1/calendar/connection")).status_code == 202
    stack.queue_messages("CleanupQueue")  # the original job is lost
    wiring.publisher().request_disconnect("org_sunbright", "u_miguel")
    stack.drain()
    assert state_of(stack, teammate["session"]) == "not_connected"
    assert live_managed(stack, calendar) == []


def test_a_replayed_deactivation_spares_a_connection_made_after_it(stack, teammate):
    calendar = cal_id(teammate["account"], "Calendar")
    connect_miguel(stack, teammate)
    next_second()  # the clock has whole seconds
    message = {"type": "user.deactivated", "message_id": "m-deact", "occurred_at": now_z(),
               "org_id": "org_sunbright", "user_id": "u_miguel"}
    stack.send("UserEventsQueue", message)
    stack.drain()
    assert state_of(stack, teammate["session"]) == "not_connected"
    # Reactivated, Miguel connects again
    next_second()
    connect_miguel(stack, teammate)
    managed_event("u_miguel", calendar, "ms_after")
    # The deactivation is redriven from the DLQ
    stack.send("UserEventsQueue", message)
    stack.drain()
    assert state_of(stack, teammate["session"]) == "connected"
    assert live_managed(stack, calendar) == ["ms_after"]
    assert stack.queue_messages("UserEventsDLQ") == []


# ---- one calendar account, two SolarNexus users (a shared installs@ mailbox) ----------------------


def test_a_second_user_cannot_connect_an_account_a_teammate_connected(stack, jane):
    from tests.helpers import connect

    installs = connect(stack, jane["session"], "google", jane["work"], "Installs")
    managed_event("u_jane", installs, "ms_jane")
    jane_sub = wiring.connection_service().store.get_connection("u_jane").cronofy_sub
    # Ana authorizes the same (shared) account
    ana = stack.browser("u_ana", "org_sunbright")
    outcome = browser.connect(ana, stack.base_url, "google", jane["work"]["profile_id"])
    # Then she is told why, and nothing of hers is stored
    assert outcome == {"calendar_sync": "error", "reason": "account_in_use"}
    assert state_of(stack, ana) == "not_connected"
    assert not [i for i in stack.raw_items() if i["pk"]["S"] == "USER#u_ana"]
    # And Jane's authorization, channel and events are untouched
    assert stack.emulator.account_state(jane_sub)["revoked"] is False
    assert len(stack.emulator.channels(jane_sub)) == 1
    assert live_managed(stack, installs) == ["ms_jane"]
    # When Jane leaves, Ana can connect that account
    jane["session"].delete(stack.url("/v1/calendar/connection"))
    stack.drain()
    outcome = browser.connect(ana, stack.base_url, "google", jane["work"]["profile_id"])
    assert outcome == {"calendar_sync": "choose_calendar"}


def test_replacing_a_pending_connection_closes_its_channel_and_revokes_another_account(stack, jane):
    store = wiring.connection_service().store
    # Jane authorizes her work account (several calendars: pending), then the same account again
    assert browser.connect(jane["session"], stack.base_url, "google", jane["work"]["profile_id"]) == {
        "calendar_sync": "choose_calendar"}
    first = store.get_connection("u_jane")
    assert browser.connect(jane["session"], stack.base_url, "google", jane["work"]["profile_id"]) == {
        "calendar_sync": "choose_calendar"}
    second = store.get_connection("u_jane")
    # The first attempt's channel is closed, the account stays authorized for the new connection
    open_channels = [c["channel_id"] for c in stack.emulator.account_state(first.cronofy_sub)["channels"]]
    assert open_channels == [second.channel_id]
    assert stack.emulator.account_state(first.cronofy_sub)["revoked"] is False
    # Then she picks her personal account instead: the work account's authorization is revoked
    assert browser.connect(jane["session"], stack.base_url, "google", jane["personal"]["profile_id"]) == {
        "calendar_sync": "connected"}
    stack.drain()
    work = stack.emulator.account_state(first.cronofy_sub)
    assert work["revoked"] is True and work["channels"] == []
    personal = store.get_connection("u_jane")
    assert personal.cronofy_sub != first.cronofy_sub
    assert stack.emulator.account_state(personal.cronofy_sub)["revoked"] is False
    # and the work account is free for a teammate
    ana = stack.browser("u_ana", "org_sunbright")
    assert browser.connect(ana, stack.base_url, "google", jane["work"]["profile_id"])["calendar_sync"] != "error"


def test_a_write_in_between_does_not_refuse_a_disconnect(stack, teammate, monkeypatch):
    """The connection changes between the disconnect's read and its save (a notification's read records
    its check, a backfill finishes): the disconnect is made again on the fresh connection, not refused."""
    connect_miguel(stack, teammate)
    store = wiring.store()
    real_save = store.save_connection
    raced = []

    def save_after_a_concurrent_write(conn):
        if not raced:  # the first save loses the race to another writer
            raced.append(True)
            real_save(store.get_connection(conn.user_id).model_copy(update={"last_checked_at": datetime.now(UTC)}))
        return real_save(conn)

    monkeypatch.setattr(store, "save_connection", save_after_a_concurrent_write)
    resp = teammate["session"].delete(stack.url("/v1/calendar/connection"))
    assert resp.status_code == 202, resp.text
    assert raced and store.get_connection("u_miguel").state.value == "disconnecting"
    assert store.get_connection("u_miguel").last_checked_at is not None  # the other writer's change kept
    stack.drain()
    assert state_of(stack, teammate["session"]) == "not_connected"
