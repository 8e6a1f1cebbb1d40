"""Issue 15's figure: an admin connects MEMBERS (200) crew members at once through Enterprise Connect,
through the local stack (real handlers, the backfill state machine under moto, the emulator enforcing
Cronofy's 50/s and 500/min). Each member has MILESTONES (5) scheduled milestones before they connect.

Prints the Cronofy requests used (by endpoint), the busiest second and minute against the limit, the
429s, and checks every member ended `connected` with its backfill `succeeded` and its milestones on
its primary calendar. Writes bench/results/enterprise_connect.json.
"""

from __future__ import annotations

import collections
import faulthandler
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "core")]
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")

from bench import provenance  # noqa: E402
from localdev import enterprise_flow as ec  # noqa: E402
from localdev.builders import in_days, milestone  # noqa: E402
from localdev.stack import DevStack  # noqa: E402

ORG = "org_sunbright"
DOMAIN = "crew.example"
LIMIT = (50, 500)


def _endpoint(path: str) -> str:
    for prefix in ("/v1/calendars/", "/v1/channels/", "/v1/events/pages/"):
        if path.startswith(prefix):
            return prefix + "..."
    return path


def ticker(every: float, line) -> threading.Event:
    """Print `line()` every `every` seconds (stderr) until the returned event is set: the callbacks and
    backfills take minutes, and nothing else is printed while they run."""
    stop = threading.Event()

    def tick() -> None:
        started = time.monotonic()
        while not stop.wait(every):
            print(f"  {time.monotonic() - started:5.0f} s  {line()}", file=sys.stderr, flush=True)

    threading.Thread(target=tick, name="ec-progress", daemon=True).start()
    return stop


def run(members: int, per_member: int) -> dict:
    with DevStack(emulator_options={"rate_limit": LIMIT}) as stack:
        stack.emulator.add_enterprise_domain("google", DOMAIN)
        crew = [(f"u_crew{i:03d}", f"crew{i:03d}@{DOMAIN}") for i in range(members)]
        for _user_id, email in crew:
            stack.emulator.add_calendar_account("google", email, calendars=[
                {"name": "Holidays", "readonly": True}, {"name": email, "primary": True}])
        print(f"  seeding {members} members' accounts and {members * per_member} milestones ...", file=sys.stderr,
              flush=True)
        for i in range(0, members * per_member, 10):
            batch = [milestone(f"ms_{j}", 1, [crew[j % members][0]], in_days(1 + j % 60)) for j in range(i, i + 10)]
            stack.invoke("MilestonePushFunction", stack.sqs_event("MilestoneEventsQueue", batch))
        admin = stack.browser("u_admin", ORG, roles=["admin"])
        stack.emulator.clear_request_log()
        stack.emulator.limiter.reset_stats()
        started = time.perf_counter()
        assert ec.outcome(ec.authorize(admin, stack.base_url, ORG, DOMAIN)) == {"enterprise_connect": "connected"}
        resp = ec.request_members(admin, stack.base_url, ORG, crew)
        assert resp.status_code == 202, resp.text
        requested_at = time.perf_counter()
        print(f"  {members} members requested; their connects and backfills (a line per change of state):",
              file=sys.stderr, flush=True)
        stack.start_pump()
        deliveries = stack.emulator.enterprise.deliveries.log
        progress = ticker(float(os.environ.get("BENCH_PROGRESS", "30")), lambda: (
            f"{len(deliveries)} of {members} member callbacks delivered, "
            f"{len(stack.emulator.request_log):,} Cronofy requests"))
        try:
            ec.settle(stack, timeout=1800)
            last_change, seen = time.monotonic(), None
            while True:  # backfills retried after throttling may still be going
                status = ec.status(admin, stack.base_url, ORG)
                states = collections.Counter((m["status"], m["connection_state"]) for m in status["members"])
                if states != seen:
                    print(f"{time.perf_counter() - started:7.1f}s {dict(states)}", file=sys.stderr, flush=True)
                    seen, last_change = states, time.monotonic()
                if states.get(("connected", "connected")) == members or time.monotonic() - last_change > 120:
                    break
                time.sleep(2)
        finally:
            progress.set()
            stack.stop_pump()
        wall = time.perf_counter() - started
        rows = status["members"]
        not_done = [m for m in rows if m["status"] != "connected" or m["connection_state"] != "connected"]
        backfills_ok = 0
        for user_id, _ in crew:
            body = stack.browser(user_id, ORG).get(stack.url("/v1/calendar/connection")).json()
            if (body.get("backfill") or {}).get("status") == "succeeded" and body["backfill"]["done"] == per_member:
                if len([e for e in stack.emulator.events(body["calendar"]["id"]) if e["managed"]]) == per_member:
                    backfills_ok += 1
        log = stack.emulator.request_log
        by_endpoint = collections.Counter(f"{e['method']} {_endpoint(e['path'])}" for e in log
                                          if not e["path"].startswith("/enterprise_connect/"))
        stats = stack.emulator.stats
        deliveries = stack.emulator.enterprise.deliveries.log
        return {
            "members": members,
            "milestones_per_member": per_member,
            "cronofy_requests": sum(by_endpoint.values()),
            "cronofy_requests_per_member": round(sum(by_endpoint.values()) / members, 2),
            "delegated_access_requests": by_endpoint.get("POST /v1/service_account_authorizations", 0),
            "by_endpoint": dict(by_endpoint.most_common()),
            "member_callbacks": len(deliveries),
            "member_callbacks_retried": sum(1 for d in deliveries if d["attempts"] > 1),
            "answered_429": stats["rate_limited"],
            "busiest_second": stats["max_per_second"],
            "busiest_minute": stats["max_per_minute"],
            "limit": {"per_second": LIMIT[0], "per_minute": LIMIT[1]},
            "members_connected": members - len(not_done),
            "backfills_succeeded_with_all_events": backfills_ok,
            "not_done": not_done[:5],
            "seconds_to_request": round(requested_at - started, 2),
            "seconds_total": round(wall, 1),
        }


def main() -> dict:
    provenance.provenance()  # stamped at the start: the commit the run started from, and the load then
    if os.environ.get("BENCH_HANG_DUMP"):
        faulthandler.dump_traceback_later(int(os.environ["BENCH_HANG_DUMP"]), exit=True)
    members, per_member = int(os.environ.get("MEMBERS", "200")), int(os.environ.get("MILESTONES", "5"))
    result = run(members, per_member)
    provenance.write("enterprise_connect", result, {"MEMBERS": members, "MILESTONES": per_member,
                                                    "rate_limit": list(LIMIT)})
    print(json.dumps(result, indent=2))
    ok = (result["members_connected"] == result["members"]
          and result["backfills_succeeded_with_all_events"] == result["members"]
          and result["answered_429"] == 0 and result["busiest_minute"] <= LIMIT[1])
    print("OK" if ok else "NOT OK: see not_done / answered_429")
    return result


if __name__ == "__main__":
    main()
