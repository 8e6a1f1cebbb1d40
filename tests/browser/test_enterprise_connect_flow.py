"""The admin's Enterprise Connect flow in a real browser (Debian's Chromium, Playwright): the crew page
(/app/crew), Cronofy's Enterprise Connect page on the emulator, three crew members connected at once (one
not in the domain), a member's profile saying "connected by your administrator", and ending it.
Screenshots: build/screenshots/enterprise-connect-NN-<step>.png."""

from __future__ import annotations

from pathlib import Path

from tests.browser.test_connect_flow import SCREENSHOTS, TIMEOUT_MS, page  # noqa: F401 - the page fixture
from tests.helpers import managed_events, milestone

ORG = "org_sunbright"
DOMAIN = "sunbright.example"


class Shots:
    def __init__(self, page):  # noqa: F811
        self.page = page
        self.taken: list[Path] = []
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for old in SCREENSHOTS.glob("enterprise-connect-*.png"):
            old.unlink()

    def __call__(self, name: str) -> None:
        path = SCREENSHOTS / f"enterprise-connect-{len(self.taken) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)


def test_admin_connects_three_crew_members_in_a_browser(stack, page):  # noqa: F811
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    emu = stack.emulator
    emu.add_enterprise_domain("google", DOMAIN, f"it@{DOMAIN}")
    emu.add_calendar_account("google", f"ana@{DOMAIN}")
    emu.add_calendar_account("google", f"bo@{DOMAIN}")
    emu.add_calendar_account("google", "cy@gmail.com")
    stack.send("MilestoneEventsQueue", milestone("ms_ec", 1, ["u_ana", "u_bo"], name="Install"))
    stack.drain()
    stack.start_pump()
    shot = Shots(page)

    page.goto(stack.url(f"/app/crew?as=u_office&org={ORG}&roles=admin,member"))
    expect(page.locator("#ec-state")).to_have_attribute("data-state", "not_connected")
    shot("crew-page")
    page.click("#ec-start")

    # Cronofy's Enterprise Connect page: the Workspace admin allows it for the domain
    page.wait_for_selector("#allow")
    page.check(f"input[name=domain][value='{DOMAIN}']")
    shot("cronofy-enterprise-connect")
    page.click("#allow")

    page.wait_for_url("**/app/crew*")
    expect(page.locator("#notice-text")).to_contain_text("authorized")
    expect(page.locator("#ec-state")).to_have_attribute("data-state", "active")
    page.fill("#members", f"u_ana ana@{DOMAIN}\nu_bo bo@{DOMAIN}\nu_cy cy@gmail.com")
    shot("members")
    page.click("#ec-request")

    for user_id, status in (("u_ana", "connected"), ("u_bo", "connected"), ("u_cy", "failed")):
        expect(page.locator(f"tr[data-user={user_id}] .member-status")).to_have_attribute("data-status", status)
    expect(page.locator("tr[data-user=u_cy]")).to_contain_text("Not in your company's domain")
    shot("members-connected")

    # Ana's own profile: connected by her administrator, the install on her calendar
    member = page.context.new_page()
    member.goto(stack.url(f"/app/profile?as=u_ana&org={ORG}"))
    expect(member.locator("#connection-state")).to_have_attribute("data-state", "connected")
    expect(member.locator("#connected-by")).to_have_text("your administrator")
    member.screenshot(path=str(SCREENSHOTS / "enterprise-connect-05-member-profile.png"), full_page=True)
    shot.taken.append(SCREENSHOTS / "enterprise-connect-05-member-profile.png")
    ana_calendar = stack.browser("u_ana", ORG).get(stack.url("/v1/calendar/connection")).json()["calendar"]["id"]
    assert [e["summary"] for e in managed_events(stack, ana_calendar).values()] == ["Install - Ana Ruiz"]
    member.close()

    # End Enterprise Connect: the members it connected are disconnected
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#ec-end")
    expect(page.locator("#ec-state")).to_have_attribute("data-state", "ended")
    stack.drain()
    page.reload()
    expect(page.locator("tr[data-user=u_ana] .member-status")).to_have_attribute("data-status", "disconnected")
    shot("ended")
    assert managed_events(stack, ana_calendar) == {}
    assert all(p.stat().st_size > 1000 and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in shot.taken)
