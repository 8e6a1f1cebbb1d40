"""One correlation id follows a request from the API through the queue to the next function."""

import threading

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


def test_functions_running_at_once_each_log_as_themselves(stack, service_logs, monkeypatch):
    """The local stack runs every function in one process; two invocations at the same moment must
    not relabel each other's lines (in Lambda each has its own process)."""
    from calsync.observability import logger

    both = threading.Barrier(2, timeout=10)

    def handler(correlation_id):
        @logger.inject_lambda_context(clear_state=True)
        def run(event, context):
            logger.set_correlation_id(correlation_id)
            both.wait()  # both functions have set their keys before either logs
            logger.info("working")
            both.wait()

        return run

    names = ("BackfillFunction", "WebhookIntakeFunction")
    for name in names:
        monkeypatch.setitem(stack._handlers, name, handler(f"corr-{name}"))
    threads = [threading.Thread(target=stack.invoke, args=(name, {})) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    working = [entry for entry in service_logs.lines() if entry.get("message") == "working"]
    assert sorted((entry["function_name"], entry["correlation_id"]) for entry in working) == [
        (name, f"corr-{name}") for name in names]
