"""Issue 10, finding 8: each function's narrowed DynamoDB and KMS permissions in template.yaml cover
every call its real handler makes through a whole lifecycle (moto does not enforce IAM, so this test
does), and every KMS call names the user in its encryption context (the key policy denies the rest)."""

import threading
from collections import defaultdict

import botocore.client

from localdev import browser, template
from tests.helpers import cal_id, in_days, iso, milestone, push

_calls = threading.local()  # the functions being invoked in this thread, innermost last


def _current():
    stack = getattr(_calls, "stack", None)
    return stack[-1] if stack else None
_TRANSACT = {"Put": "PutItem", "Delete": "DeleteItem", "Update": "UpdateItem", "ConditionCheck": "ConditionCheckItem"}


def allowed_actions(function_id: str) -> set[str] | None:
    """dynamodb:* and kms:* actions of the function's inline statements (None: a SAM policy template)."""
    props = template.load()["Resources"][function_id]["Properties"]
    actions: set[str] = set()
    for policy in props["Policies"]:
        if not isinstance(policy, dict):
            continue
        if "DynamoDBCrudPolicy" in policy:
            return None
        for statement in policy.get("Statement", []):
            actions |= {a for a in statement["Action"] if a.startswith(("dynamodb:", "kms:"))}
    return actions


def test_every_call_of_a_lifecycle_is_allowed_by_the_functions_policy(stack, jane, teammate, monkeypatch):
    used: dict[str, set[str]] = defaultdict(set)
    contexts: list[dict] = []
    original_call = botocore.client.BaseClient._make_api_call
    original_invoke = stack.invoke

    def record(client, operation, params):
        function = _current()
        service = client.meta.service_model.endpoint_prefix
        if function and service == "dynamodb":
            if operation == "TransactWriteItems":
                used[function] |= {f"dynamodb:{_TRANSACT[k]}" for item in params["TransactItems"] for k in item}
            else:
                used[function].add(f"dynamodb:{operation}")
        if function and service == "kms":
            used[function].add(f"kms:{operation}")
            contexts.append(params.get("EncryptionContext") or {})
        return original_call(client, operation, params)

    def invoke(function_id, event):
        _calls.stack = [*getattr(_calls, "stack", []), function_id]
        try:
            return original_invoke(function_id, event)
        finally:
            _calls.stack = _calls.stack[:-1]

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", record)
    monkeypatch.setattr(stack, "invoke", invoke)

    # A lifecycle touching every function but the reconciler
    outcome = browser.connect(jane["session"], stack.base_url, "google", jane["work"]["profile_id"])
    assert outcome["calendar_sync"] == "choose_calendar"
    assert jane["session"].get(stack.url("/v1/calendar/calendars")).status_code == 200
    installs = cal_id(jane["work"], "Installs")
    assert jane["session"].put(stack.url("/v1/calendar/connection"), json={"calendar_id": installs}).status_code == 200
    stack.drain()
    assert push(stack, milestone("ms_iam", 1, ["u_jane", "u_miguel"], in_days(3))) == set()
    stack.emulator.add_external_event(installs, "Dentist", iso(in_days(1, 9)), iso(in_days(1, 10)))
    stack.drain()
    assert jane["session"].get(stack.url("/v1/orgs/org_sunbright/calendar-connections")).status_code == 200
    busy = jane["session"].get(stack.url("/v1/orgs/org_sunbright/busy"), params={
        "user_ids": "u_jane", "from": iso(in_days(0)), "to": iso(in_days(5))})
    assert busy.status_code == 200
    availability = jane["session"].post(stack.url("/v1/orgs/org_sunbright/availability"), json={
        "user_ids": ["u_jane"], "duration_minutes": 60, "from": iso(in_days(1, 0)), "to": iso(in_days(3, 0))})
    assert availability.status_code == 200, availability.text
    admin = stack.browser("u_boss", "org_sunbright", roles=["admin", "member"])
    assert admin.get(stack.url("/v1/orgs/org_sunbright/calendar-health")).status_code == 200
    browser.connect(teammate["session"], stack.base_url, "microsoft", teammate["account"]["profile_id"])
    stack.drain()
    jane["session"].delete(stack.url("/v1/calendar/connection"))
    stack.send("UserEventsQueue", {"type": "user.deactivated", "message_id": "m-iam", "occurred_at": iso(in_days(1)),
                                   "org_id": "org_sunbright", "user_id": "u_miguel"})
    stack.drain()

    checked = set()
    for function_id, actions in used.items():
        allowed = allowed_actions(function_id)
        if allowed is None:
            continue  # the reconciler keeps its policy templates for now
        assert actions <= allowed, (function_id, sorted(actions - allowed))
        checked.add(function_id)
    assert checked >= {"CalendarApiFunction", "OAuthCallbackFunction", "WebhookIntakeFunction",
                       "NotificationProcessorFunction", "MilestonePushFunction", "BackfillFunction",
                       "DeactivationCleanupFunction"}
    # The key policy denies any use of the key without these: every real call carries them
    assert contexts and all(c.get("purpose") == "cronofy-tokens" and c.get("user_id") for c in contexts)
