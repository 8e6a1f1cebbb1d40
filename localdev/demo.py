"""`make demo`: the whole system on the local stack (moto + Cronofy emulator + router + the real
handlers), walking through the help article's story and checking each claim as it goes.

Exits 0 when every step did what it says; a failed check prints what was expected and exits 1.
"""

from __future__ import annotations

import sys
import time

from localdev import browser
from localdev.stack import LocalStack

ORG = "org_sunbright"


class DemoFailure(AssertionError):
    pass


def say(text: str = "") -> None:
    print(text, flush=True)


def step(title: str) -> None:
    say(f"\n== {title}")


def check(condition: bool, claim: str) -> None:
    if not condition:
        raise DemoFailure(claim)
    say(f"   ok  {claim}")


def run(stack: LocalStack) -> None:
    emu = stack.emulator
    step("Calendars at the providers (emulated by the local Cronofy)")
    jane_work = emu.add_calendar_account("google", "jane.smith@example.com", calendars=[
        {"name": "jane.smith@example.com", "primary": True},
        {"name": "Installs"},
        {"name": "Holidays in United States", "readonly": True},
    ])
    emu.add_calendar_account("google", "jane.smith.home@example.com", calendars=[{"name": "Family", "primary": True}])
    miguel_acct = emu.add_calendar_account("microsoft", "miguel@sunbright.example", calendars=[
        {"name": "Calendar", "primary": True}, {"name": "Birthdays", "readonly": True}])
    say("   Jane Smith: two Google accounts; jane.smith@example.com has 3 calendars (1 read-only)")
    say("   Miguel Ortiz (her teammate): one Microsoft account with one writable calendar")

    jane = stack.browser("u_jane", ORG)
    miguel = stack.browser("u_miguel", ORG)

    step("Jane clicks 'Connect SolarNexus to My Calendar' and picks Google")
    url = browser.start_connect(jane, stack.base_url, "google")
    say(f"   POST /v1/calendar/connect -> {url.split('?')[0]}?... (signed, single-use state)")
    resp = browser.consent(jane, url, jane_work["profile_id"])
    say("   consent page: selects jane.smith@example.com, clicks Allow; the browser follows the redirects")
    outcome = browser.outcome(resp)
    say(f"   back on the web app: {resp.url.replace(stack.base_url, '')}")
    check(outcome.get("calendar_sync") == "choose_calendar", "several calendars: Jane is asked to choose one")

    calendars = jane.get(stack.url("/v1/calendar/calendars")).json()["calendars"]
    say(f"   writable calendars offered: {[c['name'] for c in calendars]}")
    check("Holidays in United States" not in [c["name"] for c in calendars], "read-only calendars are not offered")
    installs = next(c for c in calendars if c["name"] == "Installs")
    jane.put(stack.url("/v1/calendar/connection"), json={"calendar_id": installs["id"]}).raise_for_status()
    stack.drain()
    status = jane.get(stack.url("/v1/calendar/connection")).json()
    say(f"   profile: state={status['state']} calendar={status['calendar']['name']!r} via {status['profile_name']}")
    check(status["state"] == "connected" and status["calendar"]["name"] == "Installs",
          "Jane's profile shows the calendar she chose")

    step("Miguel connects his Microsoft calendar")
    outcome = browser.connect(miguel, stack.base_url, "microsoft", miguel_acct["profile_id"])
    stack.drain()
    status = miguel.get(stack.url("/v1/calendar/connection")).json()
    say(f"   outcome={outcome['calendar_sync']} calendar={status['calendar']['name']!r}")
    check(outcome["calendar_sync"] == "connected" and status["calendar"]["name"] == "Calendar",
          "his only writable calendar is selected automatically")

    step("The scheduler's sync icons (GET /v1/orgs/org_sunbright/calendar-connections)")
    rows = jane.get(stack.url(f"/v1/orgs/{ORG}/calendar-connections")).json()["connections"]
    for row in rows:
        say(f"   {row['user_id']:<10} {row['state']:<10} sync icon: {'yes' if row['sync'] else 'no'}")
    check({r["user_id"] for r in rows if r["sync"]} == {"u_jane", "u_miguel"}, "both show the sync icon")
    outsider = stack.browser("u_eve", "org_other", roles=["admin"])
    code = outsider.get(stack.url(f"/v1/orgs/{ORG}/calendar-connections")).status_code
    check(code == 403, "another organization's admin gets 403")

    step("Jane clicks 'Disconnect My Calendar'")
    jane_sub = _sub(stack, "u_jane")
    resp = jane.delete(stack.url("/v1/calendar/connection"))
    say(f"   DELETE /v1/calendar/connection -> {resp.status_code} {resp.json()}")
    stack.drain()
    _check_gone(stack, jane, "u_jane", jane_sub)

    step("Miguel's account is deactivated (user.deactivated on the user queue)")
    miguel_sub = _sub(stack, "u_miguel")
    stack.send("UserEventsQueue", {"type": "user.deactivated", "message_id": "demo-1",
                                   "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                   "org_id": ORG, "user_id": "u_miguel"})
    stack.drain()
    _check_gone(stack, miguel, "u_miguel", miguel_sub)

    step("Messages the core platform received (CalendarChangesQueue)")
    for message in stack.queue_messages("CalendarChangesQueue"):
        say(f"   {message['user_id']:<10} -> {message['state']:<16} {message.get('reason') or ''}")
    calls = len(emu.request_log)
    say(f"\nCronofy requests in the whole demo: {calls}")


def _sub(stack: LocalStack, user_id: str) -> str:
    from calsync import runtime

    return runtime.connection_service().store.get_connection(user_id).cronofy_sub


def _check_gone(stack: LocalStack, session, user_id: str, sub: str) -> None:
    status = session.get(stack.url("/v1/calendar/connection")).json()
    check(status == {"state": "not_connected"}, f"{user_id}'s profile says not connected")
    left = [i for i in stack.raw_items() if i["pk"]["S"] == f"USER#{user_id}"]
    check(left == [], "connection and encrypted tokens deleted from DynamoDB")
    state = stack.emulator.account_state(sub)
    check(state["revoked"], "authorization revoked at Cronofy")
    check(state["channels"] == [], "push channel closed")


def main() -> int:
    started = time.monotonic()
    say("SolarNexus Calendar Sync - local demo (moto + Cronofy emulator + the real Lambda handlers)")
    with LocalStack() as stack:
        say(f"   router (API Gateway stand-in): {stack.base_url}   Cronofy emulator: {stack.emulator.base_url}")
        try:
            run(stack)
        except DemoFailure as failure:
            say(f"\nFAILED: {failure}")
            return 1
    say(f"\nDemo finished in {time.monotonic() - started:.1f} s: every check passed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
