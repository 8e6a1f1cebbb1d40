"""Validation of request bodies for event writes (single endpoints and batch entries)."""

from __future__ import annotations

import re
from collections.abc import Callable
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


_INVALID = object()  # a field checker's answer when the value was rejected (the error is recorded)


def _description(desc: Any, errs: FieldErrors) -> Any:
    if desc is None:
        return ""
    if not isinstance(desc, str):
        errs.invalid("description", "description must be a string")
        return _INVALID
    if len(desc) > DESCRIPTION_MAX:
        errs.invalid("description", f"description must be at most {DESCRIPTION_MAX} characters")
        return _INVALID
    return desc


def _location(loc: Any, errs: FieldErrors) -> Any:
    if loc is None:
        return None
    if not isinstance(loc, dict):
        errs.invalid("location", "location must be an object with a description")
        return _INVALID
    desc = loc.get("description")
    if not isinstance(desc, str):
        errs.invalid("location", "location.description must be a string")
        return _INVALID
    clean: dict[str, Any] = {"description": desc}
    for coord in ("lat", "long"):
        if coord in loc and loc[coord] is not None:
            if not isinstance(loc[coord], str):
                errs.invalid("location", f"location.{coord} must be a string")
            else:
                clean[coord] = loc[coord]
    return clean


def _url(url: Any, errs: FieldErrors) -> Any:
    if url is not None and not isinstance(url, str):
        errs.invalid("url", "url must be a string")
        return _INVALID
    return url


def _transparency(value: Any, errs: FieldErrors) -> Any:
    if value not in TRANSPARENCIES:
        errs.invalid("transparency", "transparency must be one of opaque, transparent")
        return _INVALID
    return value


def _reminder_ok(reminder: Any) -> bool:
    minutes = reminder.get("minutes") if isinstance(reminder, dict) else None
    return isinstance(minutes, int) and not isinstance(minutes, bool) and 0 <= minutes <= MAX_REMINDER_MINUTES


def _reminders(rem: Any, errs: FieldErrors) -> Any:
    if rem is None:
        return []
    if not isinstance(rem, list) or not all(_reminder_ok(r) for r in rem):
        errs.invalid("reminders", 'reminders must be a list of {"minutes": 0..40320}')
        return _INVALID
    return [{"minutes": r["minutes"]} for r in rem]


def _event_private(value: Any, errs: FieldErrors) -> Any:
    if not isinstance(value, bool):
        errs.invalid("event_private", "event_private must be a boolean")
        return _INVALID
    return value


def _color(color: Any, errs: FieldErrors) -> Any:
    if color is not None and (not isinstance(color, str) or not COLOR_RE.match(color)):
        errs.invalid("color", "color must be a hex color such as #49BED8")
        return _INVALID
    return color


def _attendees(att: Any, errs: FieldErrors) -> Any:
    ok = isinstance(att, dict) and all(
        isinstance(att.get(k, []), list)
        and all(isinstance(a, dict) and isinstance(a.get("email"), str) for a in att.get(k, []))
        for k in ("invite", "remove", "reject")
    )
    if not ok:
        errs.invalid("attendees", 'attendees must be {"invite": [{"email"}], "remove": [{"email"}]}')
        return _INVALID
    return att


# The optional upsert fields, each with its checker (the value to store, or _INVALID), in the order
# their errors are reported.
OPTIONAL_FIELDS: dict[str, Callable[[Any, FieldErrors], Any]] = {
    "description": _description,
    "location": _location,
    "url": _url,
    "transparency": _transparency,
    "reminders": _reminders,
    "event_private": _event_private,
    "color": _color,
    "attendees": _attendees,
}


def _check_optional(data: dict[str, Any], errs: FieldErrors) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, check in OPTIONAL_FIELDS.items():
        if name in data:
            value = check(data[name], errs)
            if value is not _INVALID:
                out[name] = value
    return out


def _check_event_id(event_id: Any, errs: FieldErrors) -> None:
    if event_id is None or event_id == "":
        errs.required("event_id")
    elif not isinstance(event_id, str) or not EVENT_ID_RE.match(event_id):
        errs.invalid("event_id", "event_id must be 1-64 characters from A-Z a-z 0-9 _ - . @")


def _check_summary(summary: Any, errs: FieldErrors) -> None:
    if summary is None or summary == "":
        errs.required("summary")
    elif not isinstance(summary, str):
        errs.invalid("summary", "summary must be a string")
    elif len(summary) > SUMMARY_MAX:
        errs.invalid("summary", f"summary must be at most {SUMMARY_MAX} characters")


def _check_tzid(top_tzid: Any, errs: FieldErrors) -> Any:
    """The body's own tzid when it names a zone (None when absent or rejected)."""
    if top_tzid is None:
        return None
    try:
        get_zone(top_tzid)
    except ValueError as exc:
        errs.invalid("tzid", f"tzid {exc}")
        return None
    return top_tzid


def _bound_zones(
    start: Bound | None, end: Bound | None, data: dict[str, Any], top_tzid: Any, errs: FieldErrors
) -> tuple[str | None, str | None]:
    """Check start against end; the (start, end) zones of a timed event."""
    if not (start and end):
        return None, None
    if start.kind != end.kind:
        errs.invalid("end", "start and end must both be Dates or both be Times")
        return None, None
    if end.value <= start.value:  # type: ignore[operator]
        errs.invalid("end", "end must be after start")
    if start.kind != "time":
        return None, None
    start_tzid = start.tzid or top_tzid or end.tzid
    end_tzid = end.tzid or top_tzid or start.tzid
    if start_tzid is None and "tzid" not in data:
        errs.required("tzid", "tzid must be specified for events with start and end times")
    return start_tzid, end_tzid


def validate_upsert(data: Any) -> tuple[EventWrite | None, FieldErrors]:
    """Validate an upsert body. Returns ``(write, errors)``; ``write`` is None when errors exist."""
    errs = FieldErrors()
    if not isinstance(data, dict):
        errs.invalid("event", "request body must be a JSON object")
        return None, errs

    event_id = data.get("event_id")
    summary = data.get("summary")
    _check_event_id(event_id, errs)
    _check_summary(summary, errs)
    top_tzid = _check_tzid(data.get("tzid"), errs)
    start = _parse_bound("start", data.get("start"), errs)
    end = _parse_bound("end", data.get("end"), errs)
    start_tzid, end_tzid = _bound_zones(start, end, data, top_tzid, errs)
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
