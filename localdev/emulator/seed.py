"""Demo data for ``python -m localdev.emulator --seed-demo``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from .emulator import CronofyEmulator
from .timefmt import fmt_date, fmt_time


def seed_demo(emu: CronofyEmulator) -> list[dict[str, Any]]:
    """Seed the help article's cast: Jane with two Google accounts, a Microsoft and an Apple user."""
    accounts = [
        emu.add_calendar_account(
            "google",
            "jane.smith@example.com",
            name="Jane Smith",
            zoneinfo="America/Los_Angeles",
            calendars=[
                {"name": "jane.smith@example.com", "primary": True},
                {"name": "Installs", "primary": False},
                {"name": "US Holidays", "readonly": True},
            ],
        ),
        emu.add_calendar_account("google", "jane.smith.personal@gmail.com", name="Jane Smith"),
        emu.add_calendar_account(
            "microsoft",
            "jordan.tech@sunbright-solar.example",
            name="Jordan Rivera",
            zoneinfo="America/Denver",
        ),
        emu.add_calendar_account("apple", "sam@icloud.example", name="Sam Lee", zoneinfo="America/New_York"),
    ]
    now = emu.now().replace(minute=0, second=0)
    primary = accounts[0]["calendars"][0]["calendar_id"]
    tomorrow = now + timedelta(days=1)
    emu.add_external_event(
        primary, "Dentist", fmt_time(tomorrow.replace(hour=16)), fmt_time(tomorrow.replace(hour=17))
    )
    emu.add_external_event(
        primary,
        "Focus time (show as free)",
        fmt_time(tomorrow.replace(hour=18)),
        fmt_time(tomorrow.replace(hour=19)),
        transparency="transparent",
    )
    emu.add_external_event(
        primary,
        "Vacation",
        fmt_date((now + timedelta(days=7)).date()),
        fmt_date((now + timedelta(days=9)).date()),
        transparency="transparent",
    )
    ms_cal = accounts[2]["calendars"][0]["calendar_id"]
    emu.add_external_event(
        ms_cal,
        "Crew stand-up",
        fmt_time(tomorrow.replace(hour=15)),
        fmt_time(tomorrow.replace(hour=15, minute=30)),
        status="tentative",
    )
    return accounts
