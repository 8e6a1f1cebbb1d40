"""One correlation id follows a request from the API through the queue to the next function."""



from tests.helpers import connect


def test_a_disconnect_is_traced_from_the_api_to_the_cleanup(stack, teammate, service_logs):
    connect(stack, teammate["session"], "microsoft", teammate["account"])
    resp = teammate["session"].delete(stack.url("/v1/calendar/connection"))
    assert resp.status_code == 202
    stack.drain()
    lines = service_logs.lines()
    api = [entry for entry in lines if entry.get("message") == "disconnect requested"]
    cleanup = [entry for entry in lines if entry.get("message") == "connection cleaned up"]
    assert len(api) == 1 and len(cleanup) == 1
    assert api[0]["function_name"] == "CalendarApiFunction"
    assert cleanup[0]["function_name"] == "DeactivationCleanupFunction"
    assert api[0]["correlation_id"] and api[0]["correlation_id"] == cleanup[0]["correlation_id"]


def test_a_calendar_choice_is_traced_into_the_backfill(stack, jane, service_logs):
    connect(stack, jane["session"], "google", jane["work"], "Installs")
    lines = service_logs.lines()
    planned = [entry for entry in lines if entry.get("message") == "backfill planned"]
    assert len(planned) == 1 and planned[0]["function_name"] == "BackfillFunction"
    api_ids = {entry.get("correlation_id") for entry in lines if entry.get("function_name") == "CalendarApiFunction"}
    assert planned[0]["correlation_id"] in api_ids
