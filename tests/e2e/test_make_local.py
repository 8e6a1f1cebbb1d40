"""`make local` as a newcomer runs it: the real make target in a subprocess, its printed URLs and tokens
used as printed, Ctrl-C (SIGINT to its process group, as a terminal sends it) stopping everything."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
READY_WITHIN = 30.0  # seconds from `make local` to its URL lines (issue 22)
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class LocalStack:
    """`make local` running: its output collected line by line on a reader thread."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            ["make", "--no-print-directory", "local", "LOCAL_ARGS=--port 0 --emulator-port 0"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first output line matching `pattern`, polled for until `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = re.search(pattern, line)
                if found:
                    return found
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n{self.output}")

    def url(self, label: str) -> str:
        return self.wait_for(rf"^\s+{label}:\s+(\S+)", 1).group(1)

    def token(self, kind: str) -> str:
        return self.wait_for(rf"^\s+{kind} token \(.*\):\s+(\S+)$", 1).group(1)

    def interrupt(self, timeout: float = 20) -> int:
        """Ctrl-C: SIGINT to make and its children, as a terminal does; the exit status."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@contextmanager
def make_local() -> Iterator[LocalStack]:
    started = time.monotonic()
    local = LocalStack()
    try:
        local.wait_for(r"admin token \(", READY_WITHIN)
        assert time.monotonic() - started < READY_WITHIN
        yield local
    finally:
        local.kill()


def test_make_local_prints_its_urls_serves_them_and_stops_on_ctrl_c():
    with make_local() as local:
        api = local.url("API")
        base = api.split("/v1/")[0]
        for label in ("Swagger UI", "profile page", "crew page", "emulator consent", "emulator control"):
            assert local.url(label).startswith("http://127.0.0.1:"), label

        profile = requests.get(local.url("profile page"), timeout=10)
        assert profile.status_code == 200 and "Calendar Integration" in profile.text
        crew = requests.get(local.url("crew page"), timeout=10)
        assert crew.status_code == 200 and "Connect the whole crew" in crew.text
        # Node packages are installed by the target: Swagger UI's bundle is served, not a 503.
        bundle = requests.get(f"{base}/docs/swagger-ui-bundle.js", timeout=10)
        assert bundle.status_code == 200 and len(bundle.content) > 100_000
        control = requests.get(local.url("emulator control"), timeout=10)
        assert control.status_code == 200 and "jane.smith@example.com" in control.text  # seeded

        member = {"Authorization": f"Bearer {local.token('member')}"}
        admin = {"Authorization": f"Bearer {local.token('admin')}"}
        assert requests.get(api, timeout=10).status_code == 401
        answer = requests.get(api, headers=member, timeout=10)
        assert answer.status_code == 200 and answer.json() == {"state": "not_connected"}
        health = requests.get(f"{base}/v1/orgs/org_sunbright/calendar-health", headers=admin, timeout=10)
        assert health.status_code == 200 and "members" in health.json()
        assert requests.get(f"{base}/v1/orgs/org_sunbright/calendar-health", headers=member,
                            timeout=10).status_code == 403

        # One line per request: method, path (no query), status, ms, function.
        local.wait_for(r"localdev\.router GET /v1/calendar/connection 200 \d+ ms CalendarApiFunction$", 5)
        local.wait_for(r"localdev\.router GET /v1/orgs/org_sunbright/calendar-health 403 \d+ ms "
                       r"CalendarApiFunction$", 5)
        local.wait_for(r"localdev\.router GET /app/profile 200 \d+ ms webapp$", 5)
        assert "as=u_jane" not in "\n".join(line for line in local.lines if "localdev.router" in line)

        # make itself ends as interrupted (it re-raises SIGINT once its child has exited); the stack
        # stopped first and cleanly.
        assert local.interrupt() in (0, -signal.SIGINT), local.output
        assert local.lines[-1] == "make local: stopped", local.output
        assert "Traceback" not in local.output, local.output
        with pytest.raises(requests.ConnectionError):
            requests.get(api, headers=member, timeout=5)


def test_make_local_swagger_ui_renders_in_chromium():
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with make_local() as local, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            page.goto(local.url("Swagger UI"))
            page.wait_for_selector(".swagger-ui .info .title")
            assert "SolarNexus Calendar Sync API" in page.inner_text(".swagger-ui .info .title")
            page.wait_for_selector(".opblock")
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            assert any("/v1/calendar/connection" in p for p in paths), paths
        finally:
            browser.close()
