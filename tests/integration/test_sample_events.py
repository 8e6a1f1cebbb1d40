"""Every file in events/ is accepted by the function `sam local invoke` would give it to."""

import json
from pathlib import Path

import pytest

EVENTS = Path(__file__).resolve().parents[2] / "events"
FUNCTION_BY_PREFIX = {"api-": "CalendarApiFunction", "oauth-": "OAuthCallbackFunction",
                      "cleanup-": "DeactivationCleanupFunction", "webhook-": "WebhookIntakeFunction"}


def function_for(name):
    return next(f for prefix, f in FUNCTION_BY_PREFIX.items() if name.startswith(prefix))


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*.json")), ids=lambda p: p.stem)
def test_sample_event_is_handled(stack, path):
    event = json.loads(path.read_text())
    result = stack.invoke(function_for(path.stem), event)
    if "Records" in event:
        failures = {f["itemIdentifier"] for f in result["batchItemFailures"]}
        expected = {r["messageId"] for r in event["Records"] if not r["body"].startswith("{\"type\"")}
        assert failures == expected
    elif path.stem.startswith("oauth-"):
        assert result["statusCode"] == 302
        assert "calendar_sync=error" in result["headers"]["Location"]
    elif path.stem.startswith("webhook-"):
        # Signed with the local secret, but the sample channel is in no fresh stack's table: only a
        # verification (which needs no channel) is accepted.
        expected = (200, 202) if path.stem == "webhook-verification" else (401,)
        assert result["statusCode"] in expected, result
        json.loads(result["body"])
    else:
        assert result["statusCode"] in (200, 202, 404), result
        json.loads(result["body"])
