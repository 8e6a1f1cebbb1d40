"""The milestone messages the core platform sends (ARCHITECTURE §3, messages.schema.json) and the
event description (§5): what is taken, what is refused, what the calendar shows."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from pydantic import TypeAdapter, ValidationError

from calsync.milestones import DESCRIPTION_LIMIT, MANAGED_LINE, MilestoneMessage, calendar_event
from localdev.builders import deleted, milestone

SCHEMA = json.loads((Path(__file__).parents[2] / ".." / "shared" / "design" / "messages.schema.json").read_text())
_messages = TypeAdapter(MilestoneMessage)


def _schema_allows(body: dict) -> bool:
    return jsonschema.Draft202012Validator(SCHEMA).is_valid(body)


def _with(body: dict, **fields) -> dict:
    return {**body, "milestone": {**body["milestone"], **fields}}


OFF_CALENDAR = {
    "cancelled, no times, empty zone": dict(status="cancelled", start=None, end=None, timezone=""),
    "unscheduled, start null but end kept": dict(status="unscheduled", start=None),
    "cancelled, end before start": dict(status="cancelled", start="2026-12-10T10:00:00Z", end="2026-12-10T09:00:00Z"),
    "completed, all-day flag with UTC times": dict(status="completed", all_day=True),
    "scheduled without a start": dict(start=None, end="2026-12-10T09:00:00Z"),
}


@pytest.mark.parametrize("fields", OFF_CALENDAR.values(), ids=OFF_CALENDAR.keys())
def test_a_message_that_takes_a_milestone_off_calendars_is_always_taken(fields):
    body = _with(milestone("ms_1", 2, ["u_1"]), **fields)
    assert _schema_allows(body)
    assert _messages.validate_json(json.dumps(body)).milestone.on_calendar is False


def test_a_scheduled_milestone_in_an_unknown_zone_is_written_in_utc():
    body = _with(milestone("ms_1", 2, ["u_1"]), timezone="Mars/Olympus")
    assert _schema_allows(body)
    event = calendar_event(_messages.validate_json(json.dumps(body)).milestone)
    assert event["tzid"] == "Etc/UTC" and event["start"]["tzid"] == "Etc/UTC"
    assert event["start"]["time"] == body["milestone"]["start"]  # the instant is unchanged


REFUSED = {
    "version as text": lambda b: _with(b, version="2"),
    "version as boolean": lambda b: _with(b, version=True),
    "version as float": lambda b: _with(b, version=2.5),
    "all_day as text": lambda b: _with(b, all_day="false"),
    "timed, end not after start": lambda b: _with(b, end=b["milestone"]["start"]),
    "deletion version as text": lambda b: {**deleted("ms_1", 3), "version": "3"},
    "scheduled in year 9999": lambda b: _with(b, end="9999-12-01T00:00:00Z"),
    "all-day in year 1": lambda b: _with(b, all_day=True, start="0001-01-01", end="0001-01-02"),
}


@pytest.mark.parametrize("change", REFUSED.values(), ids=REFUSED.keys())
def test_a_message_with_the_wrong_types_or_unusable_times_is_refused(change):
    body = change(milestone("ms_1", 2, ["u_1"]))
    with pytest.raises(ValidationError):
        _messages.validate_json(json.dumps(body))


@pytest.mark.parametrize("long_field", ["notes", "address"])
def test_a_long_description_keeps_the_project_link_and_the_managed_line(long_field):
    body = milestone("ms_1", 1, ["u_1"])
    if long_field == "notes":
        body = _with(body, notes="x" * 10_000)
    else:
        body = _with(body, customer={**body["milestone"]["customer"], "address": "y" * 10_000})
    description = calendar_event(_messages.validate_json(json.dumps(body)).milestone)["description"]
    assert len(description) <= DESCRIPTION_LIMIT
    assert description.endswith(f"Project: {body['milestone']['url']}\n\n{MANAGED_LINE}")
    assert "Customer: Ana Ruiz" in description
    assert "…" in description


def test_a_short_description_is_unchanged_in_form():
    m = _messages.validate_json(json.dumps(milestone("ms_1", 1, ["u_1"]))).milestone
    assert calendar_event(m)["description"] == (
        "Customer: Ana Ruiz\nPhone: +1 555 0100\nEmail: ana@example.com\nAddress: 12 Main St, Fresno, CA"
        f"\n\nGate code 4411\n\nProject: https://app.solarnexus.com/projects/ms_1\n\n{MANAGED_LINE}")
