"""`make local`: the whole local stack in one command, to click through by hand.

moto, the Cronofy emulator, the router (API Gateway stand-in, with the profile page, the crew page
and Swagger UI) and Lambda's SQS event sources, seeded with the demo's people: their calendar
accounts at the providers and their scheduled milestones. Logs at INFO, one line per HTTP request;
prints the URLs and ready session tokens, then runs until Ctrl-C (or SIGTERM) stops everything.

    make local                                   # router on :8000, emulator on :8765
    make local LOCAL_ARGS="--port 0 --emulator-port 0"  # free ports (tests)
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from types import FrameType

ORG = "org_sunbright"
MEMBER = "u_jane"
ADMIN = "u_sofia"
TOKEN_TTL = 12 * 3600  # a working day of clicking without signing in again


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make local", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("LOCAL_PORT", "8000")),
                        help="the router's port on 127.0.0.1 (API, pages, Swagger UI); 0 picks a free one")
    parser.add_argument("--emulator-port", type=int, default=int(os.environ.get("LOCAL_EMULATOR_PORT", "8765")),
                        help="the Cronofy emulator's port on 127.0.0.1; 0 picks a free one")
    parser.add_argument("--log-level", default=os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="the functions' log level and the request log's (default INFO)")
    return parser.parse_args(argv)


def seed(stack) -> None:
    """The demo's people: Jane (two Google accounts), Miguel (Microsoft), the crew of three, the
    company's Google Workspace with its members, and milestones already scheduled for them."""
    from localdev import demo, demo_enterprise

    emu = stack.emulator
    demo.add_jane_and_miguel(emu)
    for _user, provider, email, zone in demo.CREW:
        emu.add_calendar_account(provider, email, zoneinfo=zone)
    demo_enterprise.add_domain(emu)
    soon = (datetime.now(UTC) + timedelta(days=2)).replace(hour=16, minute=0, second=0, microsecond=0)
    for milestone_id, name, assignees, day, hours in (
            ("ms_survey", "Site Survey", ["u_jane"], 0, 2), ("ms_install", "Panel Install", ["u_jane"], 7, 6),
            ("ms_recent", "Site Survey", ["u_jane"], -10, 2), ("ms_inspect", "Final Inspection", ["u_miguel"], 3, 1),
            ("ms_roof", "Roof inspection", ["u_ana", "u_bo"], 4, 2)):
        stack.send("MilestoneEventsQueue", demo._milestone(
            milestone_id, 1, name, assignees, soon + timedelta(days=day), hours, "Ana Ruiz", "12 Main St, Fresno, CA"))
    stack.drain()


def _banner(stack, tokens: dict[str, str], seconds: float) -> str:
    api, emu = stack.base_url, stack.emulator.base_url
    lines = [
        f"SolarNexus Calendar Sync - local stack ready in {seconds:.1f} s (Ctrl-C stops everything)",
        f"  API:              {api}/v1/calendar/connection",
        f"  Swagger UI:       {api}/docs",
        f"  profile page:     {api}/app/profile?as={MEMBER}&org={ORG}",
        f"  crew page:        {api}/app/crew?as={ADMIN}&org={ORG}&roles=admin,member",
        f"  emulator consent: {emu}/oauth/authorize (the profile page's Connect button leads there)",
        f"  emulator control: {emu}/_emulator/accounts",
        f"  member token ({MEMBER}, {ORG}): {tokens['member']}",
        f"  admin token ({ADMIN}, {ORG}):  {tokens['admin']}",
        f"  try:              curl -H \"Authorization: Bearer <member token>\" {api}/v1/calendar/connection",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    # Before the core is imported: Powertools reads its level once, at import.
    os.environ["POWERTOOLS_LOG_LEVEL"] = args.log_level
    logging.basicConfig(level=args.log_level, stream=sys.stdout, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)  # "Found credentials" per client: noise
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    from localdev import jwt
    from localdev.api_gateway import JWT_KEY
    from localdev.stack import DevStack

    stack = DevStack(emulator_options={"port": args.emulator_port}, router_port=args.port)
    try:
        stack.start()
    except OSError as error:
        print(f"make local: cannot listen ({error}); another `make local`? try LOCAL_ARGS=\"--port 0 "
              f"--emulator-port 0\"", file=sys.stderr)
        stack.stop()
        return 1
    try:
        seed(stack)
        stack.start_pump()
        tokens = {"member": jwt.issue(JWT_KEY, MEMBER, ORG, ["member"], ttl=TOKEN_TTL),
                  "admin": jwt.issue(JWT_KEY, ADMIN, ORG, ["admin", "member"], ttl=TOKEN_TTL)}
        print(_banner(stack, tokens, time.monotonic() - started), flush=True)
        while not stopping.wait(0.5):
            pass
        print("make local: stopping", flush=True)
    finally:
        stack.stop()
    print("make local: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
