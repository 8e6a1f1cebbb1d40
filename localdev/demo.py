"""`make demo`: the whole system on the local stack (moto + Cronofy emulator + router + the real
handlers), walking through the help article's story and checking each claim as it goes.

Exits 0 when every step did what it says; a failed check prints what was expected and exits 1.
"""

from __future__ import annotations

import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from zoneinfo import ZoneInfo

from localdev import browser, demo_enterprise
from localdev.stack import DevStack

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


def _when(days: float, hour: int = 16) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(hour=hour, minute=0, second=0, microsecond=0)


def _milestone(milestone_id: str, version: int, name: str, assignees: list[str], start: datetime, hours: float,
               customer: str, address: str) -> dict:
    end = start + timedelta(hours=hours)
    return {
        "type": "milestone.upserted", "message_id": str(uuid.uuid4()), "occurred_at": _z(datetime.now(UTC)),
        "org_id": ORG,
        "milestone": {
            "milestone_id": milestone_id, "version": version, "project_id": f"prj_{milestone_id}", "name": name,
            "assignee_user_ids": assignees, "start": _z(start), "end": _z(end), "all_day": False,
            "timezone": "America/Los_Angeles", "status": "scheduled",
            "customer": {"name": customer, "phone": "+1 555 0100",
                         "email": f"{customer.split()[0].lower()}@example.com", "address": address},
            "notes": "Gate code 4411", "url": f"https://app.solarnexus.com/projects/prj_{milestone_id}",
        },
    }


def _z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _show_calendar(stack: DevStack, calendar_id: str, label: str) -> dict[str, dict]:
    events = {e["event_id"]: e for e in stack.emulator.events(calendar_id) if e["managed"] and not e["deleted"]}
    say(f"   {label}: {len(events)} SolarNexus event(s)")
    for event in sorted(events.values(), key=lambda e: e["start"]):
        say(f"      {event['start']}  {event['summary']}")
    return events


# The crew of the availability part: (user, provider, email, time zone)
CREW = (("u_tomas", "google", "tomas@sunbright.example", "America/Los_Angeles"),
        ("u_priya", "microsoft", "priya@sunbright.example", "America/Denver"),
        ("u_kai", "apple", "kai@icloud.example", "America/Los_Angeles"))


def add_jane_and_miguel(emu) -> tuple[dict, dict]:
    """Jane's two Google accounts and Miguel's Microsoft account at the providers (also `make local`'s)."""
    # Fresno, California: their accounts' time zone is Pacific (crew availability reads it)
    pacific = "America/Los_Angeles"
    jane_work = emu.add_calendar_account("google", "jane.smith@example.com", zoneinfo=pacific, calendars=[
        {"name": "jane.smith@example.com", "primary": True},
        {"name": "Installs"},
        {"name": "Holidays in United States", "readonly": True},
    ])
    emu.add_calendar_account("google", "jane.smith.home@example.com", zoneinfo=pacific,
                             calendars=[{"name": "Family", "primary": True}])
    miguel_acct = emu.add_calendar_account("microsoft", "miguel@sunbright.example", zoneinfo=pacific, calendars=[
        {"name": "Calendar", "primary": True}, {"name": "Birthdays", "readonly": True}])
    return jane_work, miguel_acct


def run(stack: DevStack) -> None:
    emu = stack.emulator
    step("Calendars at the providers (emulated by the local Cronofy)")
    jane_work, miguel_acct = add_jane_and_miguel(emu)
    say("   Jane Smith: two Google accounts; jane.smith@example.com has 3 calendars (1 read-only)")
    say("   Miguel Ortiz (her teammate): one Microsoft account with one writable calendar")

    step("SolarNexus already schedules milestones (milestone queue -> milestone push keeps a mirror)")
    old = _milestone("ms_old", 1, "Utility Inspection", ["u_jane"], _when(-40), 1, "Raj Patel", "9 Elm Ct, Fresno")
    recent = _milestone("ms_recent", 1, "Site Survey", ["u_jane"], _when(-10), 2, "Lee Wong", "4 Oak St, Clovis")
    survey = _milestone("ms_survey", 1, "Site Survey", ["u_jane"], _when(2), 2, "Ana Ruiz", "12 Main St, Fresno, CA")
    install = _milestone("ms_install", 1, "Panel Install", ["u_jane"], _when(9, 15), 6, "Ana Ruiz",
                         "12 Main St, Fresno, CA")
    for message in (old, recent, survey, install):
        stack.send("MilestoneEventsQueue", message)
        m = message["milestone"]
        say(f"   {m['name']:<19} {m['start']}  -> {m['assignee_user_ids']}")
    stack.drain()

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
    primary = next(c for c in calendars if c["name"] == "jane.smith@example.com")
    picked = jane.put(stack.url("/v1/calendar/connection"), json={"calendar_id": installs["id"]}).json()
    say(f"   picks 'Installs' -> state={picked['state']} (the backfill workflow runs)")
    stack.drain()
    status = jane.get(stack.url("/v1/calendar/connection")).json()
    say(f"   profile: state={status['state']} calendar={status['calendar']['name']!r} via {status['profile_name']}"
        f" backfill={status['backfill']['done']}/{status['backfill']['total']} {status['backfill']['status']}")
    check(status["state"] == "connected" and status["calendar"]["name"] == "Installs",
          "Jane's profile shows the calendar she chose")
    events = _show_calendar(stack, installs["id"], "Jane's 'Installs' calendar")
    check(set(events) == {"sn-ms_recent", "sn-ms_survey", "sn-ms_install"},
          "the last 30 days and everything ahead are on it; the 40-day-old inspection is not")
    survey_event = events["sn-ms_survey"]
    check("+1 555 0100" in survey_event["description"] and survey_event["location"]["description"]
          == "12 Main St, Fresno, CA", "events carry the customer's name, phone, email and address")

    step("Miguel connects his Microsoft calendar")
    outcome = browser.connect(miguel, stack.base_url, "microsoft", miguel_acct["profile_id"])
    stack.drain()
    status = miguel.get(stack.url("/v1/calendar/connection")).json()
    say(f"   outcome={outcome['calendar_sync']} calendar={status['calendar']['name']!r}")
    check(outcome["calendar_sync"] == "connected" and status["calendar"]["name"] == "Calendar",
          "his only writable calendar is selected automatically")
    miguel_cal = status["calendar"]["id"]

    step("The office moves Jane's site survey two days later (milestone.upserted, version 2)")
    moved = _milestone("ms_survey", 2, "Site Survey", ["u_jane"], _when(4), 2, "Ana Ruiz", "12 Main St, Fresno, CA")
    stack.send("MilestoneEventsQueue", moved)
    stack.send("MilestoneEventsQueue", survey)  # a late duplicate of version 1 arrives afterwards
    stack.drain()
    events = _show_calendar(stack, installs["id"], "Jane's 'Installs' calendar")
    check(events["sn-ms_survey"]["start"] == moved["milestone"]["start"],
          "the survey moved on her calendar, and the late version-1 copy changed nothing")

    step("The panel install is reassigned from Jane to Miguel (version 2)")
    reassigned = _milestone("ms_install", 2, "Panel Install", ["u_miguel"], _when(9, 15), 6, "Ana Ruiz",
                            "12 Main St, Fresno, CA")
    stack.send("MilestoneEventsQueue", reassigned)
    stack.drain()
    jane_events = _show_calendar(stack, installs["id"], "Jane's 'Installs' calendar")
    miguel_events = _show_calendar(stack, miguel_cal, "Miguel's calendar")
    check("sn-ms_install" not in jane_events and "sn-ms_install" in miguel_events,
          "it left Jane's calendar and appeared on Miguel's")

    step("Jane switches to her main calendar (PUT /v1/calendar/connection)")
    jane.put(stack.url("/v1/calendar/connection"), json={"calendar_id": primary["id"]}).raise_for_status()
    stack.drain()
    old_events = _show_calendar(stack, installs["id"], "Jane's 'Installs' calendar")
    new_events = _show_calendar(stack, primary["id"], "Jane's main calendar")
    check(old_events == {} and set(new_events) == {"sn-ms_recent", "sn-ms_survey"}, "every event moved")

    step("Jane drags her site survey to Thursday on her own calendar")
    stack.queue_messages("CalendarChangesQueue")  # (earlier connection messages were shown as they came)
    thursday = _when((3 - datetime.now(UTC).weekday()) % 7 or 7, 17)
    emu.move_event(primary["id"], event_id="sn-ms_survey", start=_z(thursday), end=_z(thursday + timedelta(hours=2)))
    say(f"   (the calendar's owner moves it to {_z(thursday)}; Cronofy sends a signed 'change' notification)")
    stack.drain()
    moves = [m for m in stack.queue_messages("CalendarChangesQueue")
             if m["type"] == "milestone.rescheduled_on_calendar"]
    for m in moves:
        say(f"   core platform <- {m['type']}: {m['milestone_id']} {m['start']}..{m['end']} "
            f"based_on_version={m['based_on_version']}")
    check(len(moves) == 1 and moves[0]["start"] == _z(thursday) and moves[0]["based_on_version"] == 2,
          "SolarNexus receives the reschedule, based on the version it last pushed")

    step("Miguel's own appointments: a dentist visit, and focus time marked 'Show as Free'")
    dentist = _when(5, 17)
    emu.add_external_event(miguel_cal, "Dentist", _z(dentist), _z(dentist + timedelta(hours=1)))
    emu.add_external_event(miguel_cal, "Focus time", _z(dentist + timedelta(hours=2)),
                           _z(dentist + timedelta(hours=4)), transparency="transparent")
    stack.drain()
    emu.clear_request_log()
    params = {"user_ids": "u_miguel", "from": _z(_when(0, 0)), "to": _z(_when(14, 0))}
    resp = jane.get(stack.url(f"/v1/orgs/{ORG}/busy"), params=params)
    busy = resp.json()["users"]["u_miguel"]
    say(f"   Jane's scheduler: GET /v1/orgs/{ORG}/busy -> {busy}")
    check(busy == [{"start": _z(dentist), "end": _z(dentist + timedelta(hours=1))}],
          "the dentist shows as an anonymous busy block; focus time and SolarNexus events do not")
    check("Dentist" not in resp.text and len(emu.request_log) == 0, "no titles, and no Cronofy call behind it")

    _dentist_during_install(stack, primary["id"])

    step("Miguel revokes SolarNexus's access at his provider")
    miguel_sub_before = _sub(stack, "u_miguel")
    emu.revoke_account(miguel_sub_before)
    stack.send("MilestoneEventsQueue", _milestone("ms_inspect", 1, "Final Inspection", ["u_miguel"], _when(12), 1,
                                                  "Ana Ruiz", "12 Main St, Fresno, CA"))
    stack.drain()
    status = miguel.get(stack.url("/v1/calendar/connection")).json()
    say(f"   the next write for him fails to refresh -> status: state={status['state']} reason={status['last_error']}")
    check(status["state"] == "needs_reauth", "his profile says the calendar needs to be reconnected")
    changed = [m for m in stack.queue_messages("CalendarChangesQueue") if m["type"] == "calendar.connection_changed"]
    check([m["state"] for m in changed] == ["needs_reauth"], "the core platform is told (calendar.connection_changed)")
    browser.connect(miguel, stack.base_url, "microsoft", miguel_acct["profile_id"])
    stack.drain()
    events = _show_calendar(stack, miguel_cal, "after he reconnects, Miguel's calendar")
    check(set(events) == {"sn-ms_install", "sn-ms_inspect"}, "sync restored: the change made meanwhile is there, "
          "nothing is duplicated")

    step("The scheduler's sync icons (GET /v1/orgs/org_sunbright/calendar-connections)")
    rows = jane.get(stack.url(f"/v1/orgs/{ORG}/calendar-connections")).json()["connections"]
    for row in rows:
        say(f"   {row['user_id']:<10} {row['state']:<10} sync icon: {'yes' if row['sync'] else 'no'}")
    check({r["user_id"] for r in rows if r["sync"]} == {"u_jane", "u_miguel"}, "both show the sync icon")
    outsider = stack.browser("u_eve", "org_other", roles=["admin"])
    code = outsider.get(stack.url(f"/v1/orgs/{ORG}/calendar-connections")).status_code
    check(code == 403, "another organization's admin gets 403")

    _crew_and_health(stack)

    step("Jane clicks 'Disconnect My Calendar'")
    jane_sub = _sub(stack, "u_jane")
    emu.clear_request_log()
    resp = jane.delete(stack.url("/v1/calendar/connection"))
    say(f"   DELETE /v1/calendar/connection -> {resp.status_code} {resp.json()}")
    stack.drain()
    _check_gone(stack, jane, "u_jane", jane_sub, primary["id"])
    check(emu.count_requests(method="DELETE", path_prefix="/v1/events") == 1, "one bulk delete did it")

    step("Miguel's account is deactivated (user.deactivated on the user queue)")
    miguel_sub = _sub(stack, "u_miguel")
    stack.send("UserEventsQueue", {"type": "user.deactivated", "message_id": "demo-1",
                                   "occurred_at": _z(datetime.now(UTC)), "org_id": ORG, "user_id": "u_miguel"})
    stack.drain()
    _check_gone(stack, miguel, "u_miguel", miguel_sub, miguel_cal)

    step("Messages the core platform received since (CalendarChangesQueue)")
    for message in stack.queue_messages("CalendarChangesQueue"):
        say(f"   {message['user_id']:<10} {message['type']:<28} {message.get('state', '')} "
            f"{message.get('reason') or ''}")
    say(f"\nCronofy requests during the demo's last two steps: {len(emu.request_log)}")
    demo_enterprise.run(stack, say, step, check, _milestone)  # an admin connects the crew at once (issue 15)


def _dentist_during_install(stack: DevStack, calendar_id: str) -> None:
    emu = stack.emulator
    step("Jane books the dentist during an install (conflict alerts)")
    install = _when(6, 16)
    stack.send("MilestoneEventsQueue", _milestone("ms_roof", 1, "Roof Mount Install", ["u_jane"], install, 5,
                                                  "Sam Lee", "3 Birch Ln, Fresno, CA"))
    stack.drain()
    stack.queue_messages("CalendarChangesQueue")
    emu.clear_request_log()
    dentist = install + timedelta(hours=2)
    uid = emu.add_external_event(calendar_id, "Dentist", _z(dentist), _z(dentist + timedelta(hours=1)))
    say(f"   Jane's install runs {_z(install)} .. +5 h; on her phone she adds 'Dentist' at {_z(dentist)} for an hour")
    stack.drain()
    alerts = [m for m in stack.queue_messages("CalendarChangesQueue") if m["type"].startswith("calendar.conflict_")]
    for m in alerts:
        say(f"   core platform <- {m['type']}: {m['milestone_id']} v{m['milestone_version']} {m['user_id']} "
            f"overlap {m['overlap']['start']}..{m['overlap']['end']} conflict_id={m['conflict_id']}")
    check(len(alerts) == 1 and alerts[0]["type"] == "calendar.conflict_detected"
          and alerts[0]["overlap"] == {"start": _z(dentist), "end": _z(dentist + timedelta(hours=1))}
          and "Dentist" not in str(alerts), "the scheduler hears of it once: the overlap's start and end, no title")
    others = [e for e in emu.request_log if not (e["method"] == "GET" and e["path"].startswith("/v1/events"))]
    check(others == [], f"no Cronofy request of its own: it rode on the notification's read "
                        f"({len(emu.request_log)} Read Events request(s) in all)")
    admin = stack.browser("u_sofia", ORG, roles=["admin"])
    members = admin.get(stack.url(f"/v1/orgs/{ORG}/calendar-health")).json()["members"]
    shown = next(m for m in members if m["user_id"] == "u_jane")["conflicts"]
    say(f"   crew page (GET /v1/orgs/{ORG}/calendar-health), Jane's open conflicts: "
        f"{[(c['milestone_id'], c['overlap']) for c in shown]}")
    check([c["conflict_id"] for c in shown] == [alerts[0]["conflict_id"]], "admins see it against Jane's name")
    emu.move_event(calendar_id, event_uid=uid, start=_z(dentist + timedelta(days=1)),
                   end=_z(dentist + timedelta(days=1, hours=1)))
    stack.drain()
    ended = [m for m in stack.queue_messages("CalendarChangesQueue") if m["type"].startswith("calendar.conflict_")]
    for m in ended:
        say(f"   she moves the dentist to the next day -> core platform <- {m['type']}: why={m.get('why')}")
    check([(m["type"], m["conflict_id"], m.get("why")) for m in ended]
          == [("calendar.conflict_resolved", alerts[0]["conflict_id"], "busy_time_gone")],
          "the conflict is resolved, once, with why")


def _crew_and_health(stack: DevStack) -> None:
    emu = stack.emulator
    pacific, mountain = ZoneInfo("America/Los_Angeles"), ZoneInfo("America/Denver")
    today = datetime.now(UTC).date()
    monday = today + timedelta(days=7 + (7 - today.weekday()) % 7)

    def local(hour: int, zone: ZoneInfo, minute: int = 0, day=monday) -> datetime:
        return datetime.combine(day, dt_time(hour, minute), zone).astimezone(UTC)

    step("An install crew of three connects: Tomas and Kai in California, Priya in Colorado")
    crew = {}
    for user_id, provider, email, zone in CREW:
        account = emu.add_calendar_account(provider, email, zoneinfo=zone)
        session = stack.browser(user_id, ORG)
        browser.connect(session, stack.base_url, provider, account["profile_id"])
        crew[user_id] = {"account": account, "calendar": account["calendars"][0]["calendar_id"], "session": session}
    stack.drain()
    from calsync import wiring

    zones = {u: wiring.store().get_connection(u).timezone for u in crew}
    say(f"   time zones from their calendar accounts (Cronofy userinfo, read at connect): {zones}")
    check(zones == {"u_tomas": "America/Los_Angeles", "u_priya": "America/Denver", "u_kai": "America/Los_Angeles"},
          "each member's zone is stored with their connection")
    emu.add_external_event(crew["u_tomas"]["calendar"], "Dentist", _z(local(9, pacific)), _z(local(10, pacific, 30)))
    stack.send("MilestoneEventsQueue", _milestone("ms_battery", 1, "Battery Install", ["u_priya"], local(8, mountain),
                                                  4, "Dana Cole", "7 Pine Rd, Boulder, CO"))
    stack.drain()
    say(f"   Monday {monday}: Tomas has a dentist appointment 09:00-10:30 Pacific (his own calendar);")
    say("   Priya is already on a battery install 08:00-12:00 Mountain (a SolarNexus assignment)")

    step(f"The scheduler asks for the first two hours the whole crew is free (POST /v1/orgs/{ORG}/availability)")
    emu.clear_request_log()
    scheduler = stack.browser("u_jane", ORG)
    ask = {"user_ids": list(crew), "required": "all", "duration_minutes": 120, "from": _z(local(0, pacific)),
           "to": _z(local(0, pacific, day=monday + timedelta(days=5))), "buffer_minutes": 30,
           "working_hours": {"weekdays": [1, 2, 3, 4, 5], "start": "08:00", "end": "17:00"}, "max_results": 3}
    answer = scheduler.post(stack.url(f"/v1/orgs/{ORG}/availability"), json=ask).json()
    say("   working hours 08:00-17:00 in each member's own zone, 30 minutes' buffer around busy times")
    for slot in answer["slots"]:
        start = datetime.fromisoformat(slot["start"])
        say(f"   slot {slot['start']} .. {slot['end']}  = {start.astimezone(pacific):%a %H:%M} Pacific / "
            f"{start.astimezone(mountain):%H:%M} Mountain  free: {', '.join(slot['user_ids'])}")
    for user_id, member in answer["members"].items():
        say(f"   {user_id:<8} {member['timezone']:<20} as_of={member['as_of']} stale={member['stale']}")
    first = answer["slots"][0]
    check(first["start"] == _z(local(11, pacific, 30)) and first["user_ids"] == list(crew),
          "first slot for all three: Monday 11:30 Pacific (12:30 Mountain), after Priya's install plus buffer")
    check(len(emu.request_log) == 0, "answered from DynamoDB alone: 0 Cronofy requests")

    step("A site survey needs any one of two surveyors (required: 1)")
    survey = dict(ask, user_ids=["u_tomas", "u_kai"], required=1, duration_minutes=60, max_results=1)
    slot = scheduler.post(stack.url(f"/v1/orgs/{ORG}/availability"), json=survey).json()["slots"][0]
    say(f"   first slot {slot['start']} ({datetime.fromisoformat(slot['start']).astimezone(pacific):%a %H:%M} "
        f"Pacific) free: {slot['user_ids']}")
    check(slot == {"start": _z(local(8, pacific)), "end": _z(local(9, pacific)), "user_ids": ["u_kai"]},
          "Monday 08:00 Pacific with Kai (Tomas's dentist, with its buffer, starts 08:30)")

    step("Kai revokes SolarNexus's access; the reconciler's next visit notices; an admin checks sync health")
    emu.revoke_account(wiring.store().get_connection("u_kai").cronofy_sub)
    stack.invoke("ReconcilerFunction", {"user_ids": ["u_kai"]})
    emu.clear_request_log()
    admin = stack.browser("u_sofia", ORG, roles=["admin"])
    health = admin.get(stack.url(f"/v1/orgs/{ORG}/calendar-health")).json()
    for row in health["members"]:
        error = row["last_error"]
        say(f"   {row['user_id']:<9} {row['state']:<13} {row['provider']:<9} stale={str(row['stale']):<5} "
            f"last_sync={row['last_sync_at']} events={row['managed_events']} "
            f"error={error['reason'] + ' at ' + error['at'] if error else '-'}")
    say(f"   summary: {health['summary']}")
    kai = next(r for r in health["members"] if r["user_id"] == "u_kai")
    check(kai["state"] == "needs_reauth" and kai["stale"] and kai["last_error"]["reason"] == "authorization_revoked",
          "the admin sees Kai's broken sync, why and since when")
    check(len(emu.request_log) == 0, "0 Cronofy requests behind the health view")
    check(scheduler.get(stack.url(f"/v1/orgs/{ORG}/calendar-health")).status_code == 403,
          "a member who is not an admin gets 403")
    answer = scheduler.post(stack.url(f"/v1/orgs/{ORG}/availability"), json=ask).json()
    check(answer["members"]["u_kai"]["stale"] is True, "the scheduler's availability flags Kai's data as stale")


def _sub(stack: DevStack, user_id: str) -> str:
    from calsync import wiring

    return wiring.connection_service().store.get_connection(user_id).cronofy_sub


def _check_gone(stack: DevStack, session, user_id: str, sub: str, calendar_id: str) -> None:
    status = session.get(stack.url("/v1/calendar/connection")).json()
    left_events = [e for e in stack.emulator.events(calendar_id) if e["managed"] and not e["deleted"]]
    check(left_events == [], f"no SolarNexus event left on {user_id}'s calendar")
    check(status == {"state": "not_connected"}, f"{user_id}'s profile says not connected")
    left = [i for i in stack.raw_items() if i["pk"]["S"] == f"USER#{user_id}"]
    check(left == [], "connection and encrypted tokens deleted from DynamoDB")
    state = stack.emulator.account_state(sub)
    check(state["revoked"], "authorization revoked at Cronofy")
    check(state["channels"] == [], "push channel closed")


def main() -> int:
    started = time.monotonic()
    say("SolarNexus Calendar Sync - local demo (moto + Cronofy emulator + the real Lambda handlers)")
    with DevStack() as stack:
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
