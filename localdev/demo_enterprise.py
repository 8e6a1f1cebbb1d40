"""`make demo`, Enterprise Connect part (issue 15): the org admin connects three crew members at once,
one of whom is not in the company's domain; a member sees "connected by your administrator"; ending
Enterprise Connect disconnects only the members it connected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from localdev import browser
from localdev import enterprise_flow as ec

ORG = "org_sunbright"
DOMAIN = "sunbright-crew.example"


def add_domain(emu) -> dict:
    """The company's Google Workspace and its crew's accounts at the provider (also `make local`'s);
    returns Dee's account (he connects himself in the demo)."""
    emu.add_enterprise_domain("google", DOMAIN, f"it-admin@{DOMAIN}")
    emu.add_calendar_account("google", f"ana@{DOMAIN}", calendars=[
        {"name": "Team rota", "primary": False}, {"name": f"ana@{DOMAIN}", "primary": True}])
    emu.add_calendar_account("google", f"bo@{DOMAIN}")
    emu.add_calendar_account("google", "cy.contractor@gmail.com")  # not in the domain
    return emu.add_calendar_account("google", f"dee@{DOMAIN}")


def run(stack, say, step, check, milestone) -> None:
    emu = stack.emulator
    api = stack.base_url
    step("Enterprise Connect: the company's Google Workspace, three crew members and one who connects himself")
    dee = add_domain(emu)
    start = (datetime.now(UTC) + timedelta(days=4)).replace(hour=16, minute=0, second=0, microsecond=0)
    stack.send("MilestoneEventsQueue", milestone("ec1", 1, "Roof inspection", ["u_ana", "u_bo", "u_cy", "u_dee"],
                                                 start, 2, "Lee Park", "9 Elm St, Fresno, CA"))
    stack.drain()
    dee_session = stack.browser("u_dee", ORG)
    outcome = browser.connect(dee_session, api, "google", dee["profile_id"])
    check(outcome["calendar_sync"] == "connected", "Dee connected his calendar himself (consent page)")

    step("The admin clicks 'Connect the whole crew' (POST /v1/orgs/org_sunbright/enterprise-connect)")
    admin = stack.browser("u_office_admin", ORG, roles=["admin"])
    member = stack.browser("u_ana", ORG)
    refused = member.post(stack.url(f"/v1/orgs/{ORG}/enterprise-connect"), json={})
    check(refused.status_code == 403, "a crew member who is not an admin cannot start it (403)")
    result = ec.outcome(ec.authorize(admin, api, ORG, DOMAIN))
    check(result == {"enterprise_connect": "connected"},
          "the Workspace admin allowed it on Cronofy's Enterprise Connect page; back on SolarNexus")
    stored = [i for i in stack.raw_items() if i["pk"]["S"] == f"ORG#{ORG}" and i["sk"]["S"] == "ENTERPRISE_TOKENS"]
    check(len(stored) == 1 and set(stored[0]) == {"pk", "sk", "ciphertext"},
          "the service account's tokens are stored for the org, KMS-encrypted")

    step("The admin connects Ana, Bo and Cy by user id and calendar e-mail (one Cronofy request)")
    emu.clear_request_log()
    resp = ec.request_members(admin, api, ORG, [("u_ana", f"ana@{DOMAIN}"), ("u_bo", f"bo@{DOMAIN}"),
                                                ("u_cy", "cy.contractor@gmail.com"), ("u_dee", f"dee@{DOMAIN}")])
    check(resp.status_code == 202 and resp.json()["cronofy_requests"] == 1, "202: members asked for in one request")
    skipped = {m["user_id"]: m for m in resp.json()["members"]}["u_dee"]
    check((skipped["status"], skipped["reason"]) == ("skipped", "already_connected"),
          "Dee, who connected himself, is skipped")
    ec.settle(stack)
    rows = {m["user_id"]: m for m in ec.status(admin, api, ORG)["members"]}
    for user_id, row in sorted(rows.items()):
        say(f"   {user_id:<6} {row['email']:<28} {row['status']:<10} {row['reason'] or row['calendar_name'] or ''}")
    check(rows["u_ana"]["status"] == "connected" and rows["u_ana"]["calendar_name"] == f"ana@{DOMAIN}",
          "Ana: connected, on her primary calendar")
    check(rows["u_bo"]["status"] == "connected", "Bo: connected")
    check((rows["u_cy"]["status"], rows["u_cy"]["reason"]) == ("failed", "not_in_domain"),
          "Cy: failed, not in the domain (he can still connect himself)")
    mine = member.get(stack.url("/v1/calendar/connection")).json()
    check(mine["connected_by"] == "enterprise_connect" and mine["backfill"]["status"] == "succeeded",
          "Ana's profile: connected by your administrator, backfill done")
    events = [e for e in emu.events(mine["calendar"]["id"]) if e["managed"] and not e["deleted"]]
    check([e["summary"] for e in events] == ["Roof inspection - Lee Park"], "the roof inspection is on her calendar")
    by_path = {}
    for entry in emu.request_log:
        by_path[entry["path"].split("/cal_")[0]] = by_path.get(entry["path"].split("/cal_")[0], 0) + 1
    say(f"   Cronofy requests to connect them: {len(emu.request_log)} {dict(sorted(by_path.items()))}")

    step("The admin ends Enterprise Connect (DELETE /v1/orgs/org_sunbright/enterprise-connect)")
    ended = admin.delete(stack.url(f"/v1/orgs/{ORG}/enterprise-connect"))
    check(ended.status_code == 202 and ended.json()["disconnecting"] == 2, "202: Ana and Bo are being disconnected")
    stack.drain()
    check(member.get(stack.url("/v1/calendar/connection")).json() == {"state": "not_connected"},
          "Ana: not connected")
    check([e for e in emu.events(mine["calendar"]["id"]) if e["managed"] and not e["deleted"]] == [],
          "no SolarNexus event left on Ana's calendar")
    dee_status = dee_session.get(stack.url("/v1/calendar/connection")).json()
    check(dee_status["state"] == "connected" and "connected_by" not in dee_status,
          "Dee, who connected himself, is untouched")
    check(emu.enterprise_state()["service_accounts"][0]["revoked"], "the service account is revoked at Cronofy")
