"""The connect flow in a real browser: Debian's Chromium (headless), driven by Playwright, through the
local stack's profile page (/app/profile), the Cronofy emulator's consent page and the real handlers.

Each step leaves a PNG under build/screenshots/. Chromium comes from Debian (`make chromium`);
Playwright never downloads a browser here (no `playwright install`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from calsync import wiring
from tests.helpers import cal_id, managed_events, milestone

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
# As the machine notes require: no sandbox as root, and nothing that reaches out to Google's hosts.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000


@pytest.fixture
def page(tmp_path):
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM), headless=True, args=FLAGS,
            viewport={"width": 1000, "height": 760})
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


class Screenshots:
    def __init__(self, page):
        self.page = page
        self.taken: list[Path] = []
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for old in SCREENSHOTS.glob("connect-flow-*.png"):
            old.unlink()

    def __call__(self, name: str) -> None:
        path = SCREENSHOTS / f"connect-flow-{len(self.taken) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)


def test_jane_connects_her_installs_calendar_and_disconnects_in_a_browser(stack, jane, page):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    installs = cal_id(jane["work"], "Installs")
    # A milestone assigned to Jane is already scheduled: the backfill puts it on her calendar.
    stack.send("MilestoneEventsQueue", milestone("ms_browser", 1, ["u_jane"], name="Install"))
    stack.drain()
    stack.start_pump()  # SQS keeps moving while the browser works (the disconnect cleanup)
    shot = Screenshots(page)
    state = page.locator("#connection-state")

    # Jane opens her profile: not connected
    page.goto(stack.url("/app/profile?as=u_jane&org=org_sunbright"))
    expect(state).to_have_attribute("data-state", "not_connected")
    expect(page.locator("#connect")).to_have_text("Connect SolarNexus to My Calendar")
    shot("profile")

    # Connect SolarNexus to My Calendar -> Google
    page.click("#connect")
    page.check("#provider-google")
    shot("provider")
    page.click("#continue")

    # Cronofy's consent page: her work account, Allow
    page.wait_for_selector("#consent-form")
    page.check(f"input[name=profile_id][value='{jane['work']['profile_id']}']")
    shot("consent")
    page.click("#allow")

    # Back on the profile: authentication successful, pick a calendar
    page.wait_for_url("**/app/profile*")
    expect(page.locator("#notice-text")).to_contain_text("Authentication successful")
    expect(page.locator("#calendar-picker")).to_be_visible()
    names = page.locator("input.calendar-choice").evaluate_all("els => els.map(e => e.dataset.name)")
    assert sorted(names) == ["Installs", "jane.smith@example.com"]  # writable calendars of that account only
    page.check(f"input.calendar-choice[value='{installs}']")
    shot("choose-calendar")
    page.click("#save")

    # The profile shows the calendar once the backfill is done
    expect(state).to_have_attribute("data-state", "connected")
    expect(page.locator("#calendar-name")).to_have_text("Installs")
    expect(page.locator("#profile-name")).to_have_text("jane.smith@example.com")
    shot("connected")
    assert [e["summary"] for e in managed_events(stack, installs).values()] == ["Install - Ana Ruiz"]
    sub = wiring.connection_service().store.get_connection("u_jane").cronofy_sub

    # Disconnect My Calendar -> confirm -> not connected, and the event is gone
    page.click("#disconnect")
    expect(page.locator("#confirm-disconnect")).to_be_visible()
    shot("confirm-disconnect")
    page.click("#confirm-disconnect-yes")
    expect(state).to_have_attribute("data-state", "not_connected")
    expect(page.locator("#notice-text")).to_contain_text("disconnected")
    shot("disconnected")
    assert managed_events(stack, installs) == {}
    assert stack.emulator.account_state(sub)["revoked"] is True

    assert all(p.stat().st_size > 1000 and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in shot.taken)


def test_an_admin_sees_the_teams_sync_health_on_the_profile_page(stack, jane, jane_cal, miguel_cal, page):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    # Miguel's authorization is revoked; the next write for him finds out
    stack.emulator.revoke_account(wiring.store().get_connection("u_miguel").cronofy_sub)
    stack.send("MilestoneEventsQueue", milestone("ms_health", 1, ["u_miguel", "u_jane"]))
    stack.drain()
    # A member sees no health section
    page.goto(stack.url("/app/profile?as=u_jane&org=org_sunbright"))
    expect(page.locator("#connection-state")).to_have_attribute("data-state", "connected")
    expect(page.locator("#sync-health")).to_be_hidden()
    # An admin does
    page.goto(stack.url("/app/profile?as=u_sofia&org=org_sunbright&roles=admin,member"))
    expect(page.locator("#health-table")).to_be_visible()
    miguel = page.locator('#health-table tr[data-user="u_miguel"]')
    expect(miguel).to_contain_text("Sync stopped")
    expect(miguel).to_contain_text("authorization_revoked")
    expect(miguel).to_contain_text("Out of date")
    expect(page.locator('#health-table tr[data-user="u_jane"]')).to_contain_text("Current")
    expect(page.locator("#health-summary")).to_contain_text("2 connected member(s): 1 out of date, 1 need to reconnect")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "sync-health-admin.png"), full_page=True)
