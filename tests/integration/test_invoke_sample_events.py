"""Every sample event in events/ does what its name says through `make invoke`'s path (localdev.invoke:
the function named as a person would, the stack seeded and prepared, the answer printed), not the
401 / invalid_state / stale an empty stack gives it (issue 22, item 5)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from localdev import invoke

EVENTS = Path(__file__).resolve().parents[2] / "events"
FUNCTION = {"api-": "calendar-api", "oauth-": "OAuthCallbackFunction", "cleanup-": "deactivation_cleanup",
            "webhook-": "WebhookIntake", "milestone-push-": "milestone-push",
            "notification-processor-": "NotificationProcessorFunction", "backfill-": "backfill",
            "reconciler-": "reconciler", "enterprise-connect-": "enterprise-connect"}


def _body(answer: dict[str, Any]) -> Any:
    return json.loads(answer["body"])


def _redirect(answer: dict[str, Any]) -> dict[str, str]:
    assert answer["statusCode"] == 302, answer
    return {k: v[0] for k, v in parse_qs(urlsplit(answer["headers"]["Location"]).query).items()}


def _status(code: int, check: Callable[[Any], bool] = lambda body: True) -> Callable[[dict, dict], bool]:
    return lambda answer, queued: answer["statusCode"] == code and check(_body(answer))


def _batch(failed: int = 0) -> Callable[[dict, dict], bool]:
    return lambda answer, queued: len(answer["batchItemFailures"]) == failed


# What each sample's name says, as its answer (and what it queued) shows it.
EXPECTED: dict[str, Callable[[Any, dict[str, int]], bool]] = {
    "api-connect": _status(200, lambda b: "/oauth/authorize?" in b["authorization_url"]),
    "api-disconnect": _status(202, lambda b: b["state"] == "disconnecting"),
    "api-get-connection": _status(200, lambda b: b["state"] == "connected" and b["calendar"]["name"] == "Installs"),
    "api-list-calendars": _status(200, lambda b: {c["name"] for c in b["calendars"]} >= {"Installs"}),
    "api-org-availability": _status(200, lambda b: len(b["slots"]) > 0),
    "api-org-busy": _status(200, lambda b: len(b["users"]["u_miguel"]) == 1),
    "api-org-calendar-health": _status(200, lambda b: [m["state"] for m in b["members"]] == ["connected"]),
    "api-org-connections": _status(200, lambda b: [c["user_id"] for c in b["connections"] if c["sync"]] == ["u_jane"]),
    "api-select-calendar": _status(200, lambda b: b["state"] == "syncing"
                                   and b["calendar"]["name"] == "jane.smith@example.com"),
    "backfill-plan": lambda a, q: a["stale"] is False and a["chunks"] == [0] and a["total"] >= 2,
    "backfill-chunk": lambda a, q: a["chunk"] == 0 and a["written"] >= 2,
    "backfill-finalize": lambda a, q: a["stale"] is False and a["total"] >= 2,
    "backfill-fail": lambda a, q: a == {"stale": False},
    "cleanup-disconnect-requested": _batch(0),
    "cleanup-mixed-batch": lambda a, q: a["batchItemFailures"] == [{"itemIdentifier": "cleanup-mixed-batch-1"}],
    "cleanup-user-deactivated": _batch(0),
    "enterprise-connect-callback": lambda a, q: _redirect(a) == {"enterprise_connect": "connected"},
    "enterprise-connect-end": _status(202, lambda b: b["state"] == "ended"),
    "enterprise-connect-member-callback": lambda a, q: a["statusCode"] == 200 and _body(a) == {"status": "connected"}
    and q == {"CalendarChangesQueue": 1},  # calendar.connection_changed for the core platform
    "enterprise-connect-members": _status(202, lambda b: {m["status"] for m in b["members"]} == {"requested"}),
    "enterprise-connect-start": _status(200, lambda b: "enterprise_connect/oauth/authorize" in b["authorization_url"]),
    "enterprise-connect-status": _status(200, lambda b: b["state"] == "active"),
    "milestone-push-batch": _batch(0),
    "notification-processor-batch": lambda a, q: a["batchItemFailures"] == [] and q.get("CalendarChangesQueue", 0) >= 1,
    "oauth-callback": lambda a, q: _redirect(a) == {"calendar_sync": "connected"},
    "oauth-callback-denied": lambda a, q: _redirect(a) == {"calendar_sync": "error", "reason": "access_denied"},
    "reconciler-schedule": lambda a, q: a["users"] == 1 and a["backlog"] == 0,
    "webhook-change": lambda a, q: a["statusCode"] == 202 and q == {"NotificationsQueue": 1},
    "webhook-verification": lambda a, q: a["statusCode"] == 200 and q == {},
}
def test_every_sample_event_has_an_expectation():
    assert {p.stem for p in EVENTS.glob("*.json")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_sample_event_does_what_its_name_says(name, capsys):
    short = next(fn for prefix, fn in FUNCTION.items() if name.startswith(prefix))
    assert invoke.main([short, str(EVENTS / f"{name}.json")]) == 0
    out, err = capsys.readouterr()
    answer = json.loads(out)
    queued = {line.split(" on ")[1]: int(line.split()[1]) for line in err.splitlines() if line.startswith("queued: ")}
    assert EXPECTED[name](answer, queued), (answer, queued, err)
