import io
import json
import logging

import pytest
from _pytest.fixtures import pytest_fixture_setup as _default_fixture_setup
from _pytest.python import pytest_pyfunc_call as _default_pyfunc_call


# CPython (3.13) keeps each thread's frames in 16 KB chunks, mapped when a call needs a new chunk and
# unmapped when that call returns: a loop whose calls cross a chunk boundary maps and unmaps one every
# time. Tests driving the local stack (moto and botocore call deep) did so hundreds of thousands of
# times per test, spending up to 40% of their CPU in the kernel (the chaos test: 745,000 mmap/munmap
# pairs, 22 s of 53 s), depending only on how deep pytest happened to start them. Each test and fixture
# runs inside one frame that takes a 1 MB chunk for itself, with ~450 KB to spare: every frame the test
# pushes on this thread lands in that chunk, which lives until the test returns.
def _roomy_frame():
    def roomy(call, *args):
        return call(*args)

    code = roomy.__code__
    spare = tuple(f"_spare{i}" for i in range(70_000))  # 560 KB of locals: the chunk is rounded up to 1 MB
    roomy.__code__ = code.replace(co_varnames=code.co_varnames + spare, co_nlocals=code.co_nlocals + len(spare))
    return roomy


_roomy = _roomy_frame()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    return _roomy(_default_pyfunc_call, pyfuncitem)


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef, request):
    return _roomy(_default_fixture_setup, fixturedef, request)


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
