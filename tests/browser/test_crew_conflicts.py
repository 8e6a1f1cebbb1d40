"""The crew page (/app/crew) shows an admin each member's open conflicts (issue 23) in a real browser, and
clears them once the overlap ends. Screenshot: build/screenshots/crew-conflicts.png."""

from __future__ import annotations

from tests.browser.test_connect_flow import SCREENSHOTS, TIMEOUT_MS, page  # noqa: F401 - the page fixture
from tests.helpers import in_days, iso, milestone, push

ORG = "org_sunbright"


def test_the_crew_page_lists_open_conflicts_and_clears_them(stack, jane_cal, page):  # noqa: F811
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    assert push(stack, milestone("ms_install", 2, ["u_jane"], in_days(3, 15), hours=4)) == set()
    dentist = stack.emulator.add_external_event(jane_cal, "Dentist", iso(in_days(3, 16)), iso(in_days(3, 17)))
    stack.drain()

    page.goto(stack.url(f"/app/crew?as=u_office&org={ORG}&roles=admin,member"))
    row = page.locator("#conflicts-table tr.conflict")
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-user", "u_jane")
    expect(row).to_have_attribute("data-milestone", "ms_install")
    expect(page.locator("#conflicts-summary")).to_have_text("1 open conflict(s)")
    expect(page.locator("#crew-conflicts")).not_to_contain_text("Dentist")  # start and end only
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "crew-conflicts.png"), full_page=True)

    stack.emulator.move_event(jane_cal, event_uid=dentist, start=iso(in_days(4, 16)), end=iso(in_days(4, 17)))
    stack.drain()
    page.locator("#conflicts-refresh").click()
    expect(page.locator("#conflicts-table")).to_have_count(0)
    expect(page.locator("#conflicts-summary")).to_contain_text("No conflicts")
