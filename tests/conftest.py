import io
import json
import logging

import pytest


@pytest.fixture
def stack():
    """A fresh local stack per test: moto, the Cronofy emulator, the router and the real handlers
    (imported here, not at the top: tests/unit runs without moto and the emulator)."""
    from localdev.stack import DevStack

    with DevStack() as local:
        yield local


@pytest.fixture
def jane(stack):
    """The help article's Jane: two Google accounts; the one she connects has several calendars."""
    work = stack.emulator.add_calendar_account("google", "jane.smith@example.com", calendars=[
        {"name": "jane.smith@example.com", "primary": True},
        {"name": "Installs", "primary": False},
        {"name": "US Holidays", "readonly": True},
    ])
    personal = stack.emulator.add_calendar_account("google", "jane.personal@example.com", calendars=[
        {"name": "Personal", "primary": True},
    ])
    return {"work": work, "personal": personal, "session": stack.browser("u_jane", "org_sunbright")}


@pytest.fixture
def teammate(stack):
    """Miguel: one writable calendar (and a read-only one), so his choice is automatic."""
    account = stack.emulator.add_calendar_account("microsoft", "miguel@sunbright.example", calendars=[
        {"name": "Calendar", "primary": True},
        {"name": "Birthdays", "readonly": True},
    ])
    return {"account": account, "session": stack.browser("u_miguel", "org_sunbright")}


@pytest.fixture
def jane_cal(stack, jane):
    """Jane connected to her Installs calendar (backfill done)."""
    from tests.helpers import connect

    return connect(stack, jane["session"], "google", jane["work"], "Installs")


@pytest.fixture
def miguel_cal(stack, teammate):
    from tests.helpers import connect

    return connect(stack, teammate["session"], "microsoft", teammate["account"])


class LogCapture:
    """Everything the service logger writes, formatted as in Lambda (JSON lines)."""

    def __init__(self):
        self.sink = io.StringIO()

    def getvalue(self) -> str:
        return self.sink.getvalue()

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.getvalue().splitlines() if line.startswith("{")]


@pytest.fixture
def service_logs():
    from calsync.observability import logger

    capture = LogCapture()
    handler = logging.StreamHandler(capture.sink)
    handler.setFormatter(logger.registered_formatter)
    previous = logger.log_level
    logger.addHandler(handler)
    logger.setLevel("DEBUG")
    yield capture
    logger.setLevel(previous)
    logger.removeHandler(handler)
