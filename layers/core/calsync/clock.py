"""The one clock (whole seconds, UTC) and the wire format of times: `...Z`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@overload
def iso(dt: datetime) -> str: ...
@overload
def iso(dt: None) -> None: ...
@overload
def iso(dt: datetime | None) -> str | None: ...
def iso(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if dt else None


def parse_utc(text: str) -> datetime:
    """A wire time (`...Z`, or with an offset) as an aware UTC datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# Times a client may ask about: far enough either way for any schedule, and far from datetime's year 1
# and 9999 limits, where the day or buffer added around a range would overflow (a 500).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
WIRE_TIME_HINT = "an ISO-8601 date-time with a time zone, e.g. 2026-12-07T08:00:00Z"


def wire_time(value: object) -> datetime:
    """A time a client sent: an ISO-8601 string with a zone, between 2000 and 2100 (ValueError otherwise).
    Not an epoch number, nor its digits as a string: a client sending one means another instant."""
    if not isinstance(value, str) or not value[:4].isdigit() or len(value) < 10 or value[4] != "-":
        raise ValueError(WIRE_TIME_HINT)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as error:
        raise ValueError(WIRE_TIME_HINT) from error
    if parsed.tzinfo is None:
        raise ValueError(WIRE_TIME_HINT)
    if not EARLIEST <= parsed < LATEST:
        raise ValueError(f"times from {EARLIEST.year} to {LATEST.year - 1} only")
    return parsed
