"""Validation of request bodies for event writes (single endpoints and batch entries)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from .errors import FieldErrors
from .timefmt import fmt_date, fmt_time, get_zone, parse_date, parse_time

EVENT_ID_RE = re.compile(r"^[A-Za-z0-9_\-.@]{1,64}$")
COLOR_RE = re.compile(r"^#[0-9A-Fa-f]{6}$")
SUMMARY_MAX = 1024
DESCRIPTION_MAX = 4096
TRANSPARENCIES = ("opaque", "transparent")
MAX_REMINDER_MINUTES = 40320

# Optional fields of an upsert that keep their previous value when omitted and are cleared by null.
OPTIONAL_FIELDS = (
    "description",
    "location",
    "url",
    "transparency",
    "reminders",
    "event_private",
    "color",
    "attendees",
)


@dataclass
class Bound:
    kind: str  # "time" or "date"
    wire: str
    value: datetime | date
    tzid: str | None


@dataclass
class EventWrite:
    """A validated upsert request, normalised."""

    event_id: str
    summary: str
    start: str
    end: str
    all_day: bool
    start_tzid: str | None
    end_tzid: str | None
    optional: dict[str, Any] = field(default_factory=dict)


def _parse_bound(name: str, value: Any, errs: FieldErrors) -> Bound | None:
    if value is None:
        errs.required(name)
        return None
    if isinstance(value, dict):
        raw_time = value.get("time")
        raw_tz = value.get("tzid")
        if raw_time is None:
            errs.required(name, f"{name}.time must be specified")
            return None
        if raw_tz is None:
            errs.required(name, f"{name}.tzid must be specified")
            return None
        try:
            moment = parse_time(raw_time)
        except ValueError as exc:
            errs.invalid(name, f"{name}.time {exc}")
            return None
        try:
            get_zone(raw_tz)
        except ValueError as exc:
            errs.invalid(name, f"{name}.tzid {exc}")
            return None
        return Bound("time", fmt_time(moment), moment, raw_tz)
    if isinstance(value, str):
        if "T" in value:
            try:
                moment = parse_time(value)
            except ValueError as exc:
                errs.invalid(name, f"{name} {exc}")
                return None
            return Bound("time", fmt_time(moment), moment, None)
        try:
            day = parse_date(value)
        except ValueError:
            errs.invalid(
                name,
                f"{name} must be a Time (2025-03-05T15:30:00Z), a Date (2025-03-05) "
                'or an object {"time", "tzid"}',
            )
            return None
        return Bound("date", fmt_date(day), day, None)
    errs.invalid(name, f'{name} must be a Time, a Date or an object {{"time", "tzid"}}')
    return None


def _check_optional(data: dict[str, Any], errs: FieldErrors) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "description" in data:
        desc = data["description"]
        if desc is None:
            out["description"] = ""
        elif not isinstance(desc, str):
            errs.invalid("description", "description must be a string")
        elif len(desc) > DESCRIPTION_MAX:
            errs.invalid("description", f"description must be at most {DESCRIPTION_MAX} characters")
        else:
            out["description"] = desc
    if "location" in data:
        loc = data["location"]
        if loc is None:
            out["location"] = None
        elif not isinstance(loc, dict):
            errs.invalid("location", "location must be an object with a description")
        else:
            desc = loc.get("description")
            if not isinstance(desc, str):
                errs.invalid("location", "location.description must be a string")
            else:
                clean: dict[str, Any] = {"description": desc}
                for coord in ("lat", "long"):
                    if coord in loc and loc[coord] is not None:
                        if not isinstance(loc[coord], str):
                            errs.invalid("location", f"location.{coord} must be a string")
                        else:
                            clean[coord] = loc[coord]
                out["location"] = clean
    if "url" in data:
        url = data["url"]
        if url is not None and not isinstance(url, str):
            errs.invalid("url", "url must be a string")
        else:
            out["url"] = url
    if "transparency" in data:
        tr = data["transparency"]
        if tr not in TRANSPARENCIES:
            errs.invalid("transparency", "transparency must be one of opaque, transparent")
        else:
            out["transparency"] = tr
    if "reminders" in data:
        rem = data["reminders"]
        if rem is None:
            out["reminders"] = []
        elif not isinstance(rem, list) or not all(
            isinstance(r, dict)
            and isinstance(r.get("minutes"), int)
            and not isinstance(r.get("minutes"), bool)
            and 0 <= r["minutes"] <= MAX_REMINDER_MINUTES
            for r in rem
        ):
            errs.invalid("reminders", 'reminders must be a list of {"minutes": 0..40320}')
        else:
            out["reminders"] = [{"minutes": r["minutes"]} for r in rem]
    if "event_private" in data:
        if not isinstance(data["event_private"], bool):
            errs.invalid("event_private", "event_private must be a boolean")
        else:
            out["event_private"] = data["event_private"]
    if "color" in data:
        color = data["color"]
        if color is not None and (not isinstance(color, str) or not COLOR_RE.match(color)):
            errs.invalid("color", "color must be a hex color such as #49BED8")
        else:
            out["color"] = color
    if "attendees" in data:
        att = data["attendees"]
        ok = isinstance(att, dict) and all(
            isinstance(att.get(k, []), list)
            and all(isinstance(a, dict) and isinstance(a.get("email"), str) for a in att.get(k, []))
            for k in ("invite", "remove", "reject")
        )
        if not ok:
            errs.invalid("attendees", 'attendees must be {"invite": [{"email"}], "remove": [{"email"}]}')
        else:
            out["attendees"] = att
    return out


def validate_upsert(data: Any) -> tuple[EventWrite | None, FieldErrors]:
    """Validate an upsert body. Returns ``(write, errors)``; ``write`` is None when errors exist."""
    errs = FieldErrors()
    if not isinstance(data, dict):
        errs.invalid("event", "request body must be a JSON object")
        return None, errs

    event_id = data.get("event_id")
    if event_id is None or event_id == "":
        errs.required("event_id")
    elif not isinstance(event_id, str) or not EVENT_ID_RE.match(event_id):
        errs.invalid("event_id", "event_id must be 1-64 characters from A-Z a-z 0-9 _ - . @")

    summary = data.get("summary")
    if summary is None or summary == "":
        errs.required("summary")
    elif not isinstance(summary, str):
        errs.invalid("summary", "summary must be a string")
    elif len(summary) > SUMMARY_MAX:
        errs.invalid("summary", f"summary must be at most {SUMMARY_MAX} characters")

    top_tzid = data.get("tzid")
    if top_tzid is not None:
        try:
            get_zone(top_tzid)
        except ValueError as exc:
            errs.invalid("tzid", f"tzid {exc}")
            top_tzid = None

    start = _parse_bound("start", data.get("start"), errs)
    end = _parse_bound("end", data.get("end"), errs)
    start_tzid = end_tzid = None
    if start and end:
        if start.kind != end.kind:
            errs.invalid("end", "start and end must both be Dates or both be Times")
        else:
            if end.value <= start.value:  # type: ignore[operator]
                errs.invalid("end", "end must be after start")
            if start.kind == "time":
                start_tzid = start.tzid or top_tzid or end.tzid
                end_tzid = end.tzid or top_tzid or start.tzid
                if start_tzid is None and "tzid" not in data:
                    errs.required("tzid", "tzid must be specified for events with start and end times")

    optional = _check_optional(data, errs)
    if errs:
        return None, errs
    assert start is not None and end is not None
    return (
        EventWrite(
            event_id=event_id,
            summary=summary,
            start=start.wire,
            end=end.wire,
            all_day=start.kind == "date",
            start_tzid=start_tzid,
            end_tzid=end_tzid,
            optional=optional,
        ),
        errs,
    )
