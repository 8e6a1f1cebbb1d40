"""Builders and steps for scenarios that go through the local stack (`DevStack`): connect a calendar
through the consent page, build milestone messages, push a batch, read the managed events back.

Tests and benchmarks both use them, so they live in `localdev` (a benchmark never imports `tests`);
`tests/helpers.py` re-exports them under their old import path."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

from localdev import browser

_versions = itertools.count(1)


def cal_id(account: dict, name: str) -> str:
    return next(c["calendar_id"] for c in account["calendars"] if c["calendar_name"] == name)


def connect(stack, session, provider: str, account: dict, calendar_name: str | None = None) -> str:
    """Connect through the consent page, choose a calendar if asked, wait for the backfill; returns the calendar id."""
    outcome = browser.connect(session, stack.base_url, provider, account["profile_id"])
    if outcome["calendar_sync"] == "choose_calendar":
        chosen = cal_id(account, calendar_name)
        resp = session.put(stack.url("/v1/calendar/connection"), json={"calendar_id": chosen})
        assert resp.status_code == 200, resp.text
    else:
        assert outcome["calendar_sync"] == "connected", outcome
    stack.drain()
    status = session.get(stack.url("/v1/calendar/connection")).json()
    assert status["state"] == "connected", status
    return status["calendar"]["id"]


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def in_days(days: float, hour: int = 15) -> datetime:
    now = datetime.now(UTC)
    return (now + timedelta(days=days)).replace(hour=hour, minute=0, second=0, microsecond=0)


def milestone(milestone_id: str, version: int, assignees: list[str], start: datetime | str | None = None,
              hours: float = 2, org_id: str = "org_sunbright", **fields) -> dict:
    """A milestone.upserted message (ARCHITECTURE §3)."""
    if start is None:
        start = in_days(3)
    if isinstance(start, datetime):
        start_s, end_s = iso(start), iso(start + timedelta(hours=hours))
    else:
        start_s, end_s = start, fields.pop("end")
    body = {
        "milestone_id": milestone_id, "version": version, "project_id": "prj_9", "name": "Site Survey",
        "assignee_user_ids": assignees, "start": start_s, "end": end_s, "all_day": False,
        "timezone": "America/Los_Angeles", "status": "scheduled",
        "customer": {"name": "Ana Ruiz", "phone": "+1 555 0100", "email": "ana@example.com",
                     "address": "12 Main St, Fresno, CA"},
        "notes": "Gate code 4411", "url": f"https://app.solarnexus.com/projects/{milestone_id}",
    }
    body.update(fields)
    return {"type": "milestone.upserted", "message_id": str(uuid.uuid4()), "occurred_at": iso(datetime.now(UTC)),
            "org_id": org_id, "milestone": body}


def deleted(milestone_id: str, version: int, org_id: str = "org_sunbright") -> dict:
    return {"type": "milestone.deleted", "message_id": str(uuid.uuid4()), "occurred_at": iso(datetime.now(UTC)),
            "org_id": org_id, "milestone_id": milestone_id, "version": version}


def managed_events(stack, calendar_id: str) -> dict[str, dict]:
    """The calendar's SolarNexus events once Cronofy has applied every write it accepted (writes
    land asynchronously: the emulator's realism.write_delay)."""
    stack.settle()
    return {e["event_id"]: e for e in stack.emulator.events(calendar_id) if e["managed"] and not e["deleted"]}


def push(stack, *messages) -> set[str]:
    """Deliver messages to milestone push as ONE SQS batch; returns the failed message ids."""
    event = stack.sqs_event("MilestoneEventsQueue", list(messages))
    result = stack.invoke("MilestonePushFunction", event)
    return {f["itemIdentifier"] for f in result["batchItemFailures"]}
