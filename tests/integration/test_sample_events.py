"""Every file in events/ is accepted by the function `sam local invoke` would give it to."""

import json
import time
from pathlib import Path

import pytest

from calsync import wiring

EVENTS = Path(__file__).resolve().parents[2] / "events"
FUNCTION_BY_PREFIX = {"api-": "CalendarApiFunction", "oauth-": "OAuthCallbackFunction",
                      "cleanup-": "DeactivationCleanupFunction", "webhook-": "WebhookIntakeFunction",
                      "milestone-push-": "MilestonePushFunction",
                      "notification-processor-": "NotificationProcessorFunction", "backfill-": "BackfillFunction",
                      "reconciler-": "ReconcilerFunction", "enterprise-connect-": "EnterpriseConnectFunction"}


def function_for(name):
    return next(f for prefix, f in FUNCTION_BY_PREFIX.items() if name.startswith(prefix))


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*.json")), ids=lambda p: p.stem)
def test_sample_event_is_handled(stack, path):
    event = json.loads(path.read_text())
    if event.get("action") == "chunk":
        # A chunk is read from what its plan stored (the state carries chunk numbers only).
        wiring.store().put_chunks(event["run_id"], [["ms_123"]] * (event["chunk"] + 1), int(time.time()) + 600)
    result = stack.invoke(function_for(path.stem), event)
    if "Records" in event:
        failures = {f["itemIdentifier"] for f in result["batchItemFailures"]}
        expected = {r["messageId"] for r in event["Records"] if not r["body"].startswith("{\"type\"")}
        assert failures == expected
    elif path.stem.startswith("backfill-"):
        # Step Functions' payloads (statemachines/backfill.asl.json). No connection or run in a fresh
        # stack matches them: plan, finalize and fail find the run stale; the chunk writes nothing.
        if event["action"] == "chunk":
            assert result["chunk"] == event["chunk"] and result["written"] == 0, result
        else:
            assert result["stale"] is True, result
    elif path.stem.startswith("reconciler-"):
        # The EventBridge schedule: the due users, none in a fresh stack.
        assert result.get("users", 0) == 0 and result["backlog"] == 0, result
    elif path.stem.startswith("oauth-"):
        assert result["statusCode"] == 302
        assert "calendar_sync=error" in result["headers"]["Location"]
    elif path.stem.startswith("enterprise-connect-"):
        # A fresh stack: no org has authorized Enterprise Connect, and the sample states are not genuine.
        expected = {"enterprise-connect-start": 200, "enterprise-connect-status": 200,
                    "enterprise-connect-members": 409, "enterprise-connect-end": 409,
                    "enterprise-connect-callback": 302, "enterprise-connect-member-callback": 403}[path.stem]
        assert result["statusCode"] == expected, result
        if expected == 302:
            assert "enterprise_connect=error" in result["headers"]["Location"]
        else:
            json.loads(result["body"])
    elif path.stem.startswith("webhook-"):
        # Signed with the local secret, but the sample channel is in no fresh stack's table: only a
        # verification (which needs no channel) is accepted.
        expected = (200, 202) if path.stem == "webhook-verification" else (401,)
        assert result["statusCode"] in expected, result
        json.loads(result["body"])
    else:
        assert result["statusCode"] in (200, 202, 404), result
        json.loads(result["body"])
