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


def iso(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if dt else None


def parse_utc(text: str) -> datetime:
    """A wire time (`...Z`, or with an offset) as an aware UTC datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
