"""Strict parsing and formatting of Cronofy's Time and Date values."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_TIME_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$")
_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")

TIME_HINT = "must be a UTC time such as 2025-03-05T15:30:00Z"
DATE_HINT = "must be a date such as 2025-03-05"


def parse_time(value: object) -> datetime:
    """Parse a Cronofy Time (UTC, ``Z`` suffix). Non-zero fractional seconds are rejected.

    ``.000Z`` (an all-zero fraction) is accepted and dropped. Raises ``ValueError`` with a reason.
    """
    if not isinstance(value, str):
        raise ValueError(TIME_HINT)
    return _parse_time(value)


@lru_cache(maxsize=1 << 16)  # pure, and the busiest call of a big calendar's reads (each event's span, every page)
def _parse_time(value: str) -> datetime:
    match = _TIME_RE.match(value)
    if not match:
        raise ValueError(TIME_HINT)
    fraction = match.group(7)
    if fraction and fraction.strip("0"):
        raise ValueError("non-zero milliseconds are not allowed; " + TIME_HINT)
    y, mo, d, h, mi, s = (int(g) for g in match.groups()[:6])
    try:
        return datetime(y, mo, d, h, mi, s, tzinfo=UTC)
    except ValueError:
        raise ValueError(TIME_HINT) from None


def parse_date(value: object) -> date:
    if not isinstance(value, str) or not _DATE_RE.match(value):
        raise ValueError(DATE_HINT)
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(DATE_HINT) from None


def is_time_string(value: object) -> bool:
    return isinstance(value, str) and "T" in value


@lru_cache(maxsize=1 << 16)  # pure: an event's times are formatted on every read of it
def fmt_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_date(day: date) -> str:
    return day.isoformat()


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def get_zone(name: object) -> ZoneInfo:
    """Return the IANA zone ``name`` or raise ``ValueError``."""
    if not isinstance(name, str) or not name or name.startswith("/") or ".." in name:
        raise ValueError("must be a valid IANA time zone identifier such as Europe/London")
    try:
        return _zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError("must be a valid IANA time zone identifier such as Europe/London") from None


def is_valid_zone(name: object) -> bool:
    try:
        get_zone(name)
    except ValueError:
        return False
    return True


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """Midnight at the start of ``day`` in ``zone``, as an aware datetime."""
    return datetime.combine(day, time(0, 0), tzinfo=zone)


def localized(moment: datetime, zone: ZoneInfo) -> str:
    """ISO-8601 time with the zone's UTC offset, e.g. ``2025-03-05T08:30:00-07:00``."""
    return moment.astimezone(zone).isoformat(timespec="seconds")


def coerce_time_or_date(value: object) -> str:
    """Accept a datetime/date object or a Time/Date string and return the wire string.

    Used by the control API, which is a little more forgiving about the Python types it accepts
    (naive datetimes are taken as UTC) but still refuses malformed strings.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return fmt_time(value.replace(microsecond=0))
    if isinstance(value, date):
        return fmt_date(value)
    if isinstance(value, str):
        if "T" in value:
            return fmt_time(parse_time(value))
        return fmt_date(parse_date(value))
    raise ValueError("expected a Time (2025-03-05T15:30:00Z), a Date (2025-03-05) or a datetime/date")


def whole_seconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


ONE_SECOND = timedelta(seconds=1)
