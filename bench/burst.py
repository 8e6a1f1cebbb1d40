"""Issue 5's burst: 20,000 milestone changes across 200 connected users, against the emulator's own
limit of 50 requests/second and 500/minute (it answers 429 above that and counts them).

Checks and prints: no request over the limit reached Cronofy (the emulator's 429 count and its
busiest 1-s and 60-s windows), the drain rate of the backlog as a share of 500/minute, and that
nothing was lost (every user's calendar equals the newest version of their milestones).
`make burst` (about 15 minutes on this machine); BURST_USERS / BURST_CHANGES scale it down and
BURST_LIMIT=per_second,per_minute sets a lower limit (so the limiter, not this machine's speed at
running the handlers, is what bounds the drain).
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "core")]
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")

from bench import meters  # noqa: E402
from calsync.milestones import event_id_for  # noqa: E402
from localdev.builders import connect, in_days, milestone  # noqa: E402
from localdev.stack import DevStack  # noqa: E402


def progress(every: float, line: Callable[[], str]) -> threading.Event:
    """Print `line()` every `every` seconds (stderr) until the returned event is set: a run of
    minutes says how far it is."""
    stop = threading.Event()

    def tick() -> None:
        started = time.monotonic()
        while not stop.wait(every):
            print(f"burst: {time.monotonic() - started:5.0f} s  {line()}", file=sys.stderr, flush=True)

    threading.Thread(target=tick, name="burst-progress", daemon=True).start()
    return stop


def main() -> dict:
    users_n = int(os.environ.get("BURST_USERS", "200"))
    changes_n = int(os.environ.get("BURST_CHANGES", "20000"))
    rng = random.Random(int(os.environ.get("BURST_SEED", "5")))
    meters.fast_moto_queries()  # moto 5 sorts the whole table per Query; the burst's table grows large
    per_second, per_minute = (int(x) for x in os.environ.get("BURST_LIMIT", "50,500").split(","))
    # The emulator enforces Cronofy's limit; our limiter is configured with the same numbers.
    os.environ["RATE_LIMIT_PER_SECOND"], os.environ["RATE_LIMIT_PER_MINUTE"] = str(per_second), str(per_minute)
    with DevStack(emulator_options={"rate_limit": (per_second, per_minute)}) as stack:
        users = [f"u_{i:03d}" for i in range(users_n)]
        calendars: dict[str, str] = {}
        every = float(os.environ.get("BURST_PROGRESS", "30"))
        started = time.monotonic()
        ticker = progress(every, lambda: f"connecting: {len(calendars)} of {users_n} users connected")
        for u in users:
            account = stack.emulator.add_calendar_account("google", f"{u}@example.com",
                                                          calendars=[{"name": "Work", "primary": True}])
            calendars[u] = connect(stack, stack.browser(u, "org_burst"), "google", account)
        ticker.set()
        connect_s = time.monotonic() - started
        # The burst: each user's milestones rescheduled several times; SQS batches of 10 mostly hold one
        # user's changes (an office rescheduling a crew's week), in shuffled order across users.
        per_user = changes_n // users_n
        chunks, truth, versions = [], {}, {}
        for u in users:
            msgs = []
            for k in range(per_user):
                mid = f"{u}_ms_{k % 25}"
                versions[mid] = versions.get(mid, 0) + 1
                msg = milestone(mid, versions[mid], [u], in_days(1 + rng.randrange(30), 8 + rng.randrange(9)),
                                org_id="org_burst")
                truth[mid] = msg["milestone"]
                msgs.append(msg)
            chunks += [msgs[i:i + 10] for i in range(0, len(msgs), 10)]
        rng.shuffle(chunks)
        stack.emulator.clear_request_log()
        before = dict(stack.emulator.stats)
        started = time.monotonic()
        for chunk in chunks:
            for m in chunk:
                stack.send("MilestoneEventsQueue", m)
        total = sum(len(c) for c in chunks)
        ticker = progress(every, lambda: (
            f"draining: {stack.invocations['MilestonePushFunction']:,} push batches, "
            f"{len(stack.emulator.request_log):,} Cronofy requests so far ({total:,} changes queued), "
            f"{stack.emulator.stats['rate_limited']} answered 429"))
        try:
            stack.drain(max_rounds=100_000, timeout=3600)
        finally:
            ticker.set()
        drain_s = time.monotonic() - started
        requests = len(stack.emulator.request_log)
        stats = stack.emulator.stats
        lost = 0
        for mid, m in truth.items():
            u = m["assignee_user_ids"][0]
            event = next((e for e in stack.emulator.events(calendars[u]) if e["event_id"] == event_id_for(mid)), None)
            if event is None or event["start"] != m["start"]:
                lost += 1
        result = {
            "users": users_n, "changes": per_user * users_n, "connect_seconds": round(connect_s, 1),
            "drain_seconds": round(drain_s, 1), "cronofy_requests": requests,
            "requests_per_minute": round(requests / drain_s * 60, 1),
            "limit": f"{per_second}/s, {per_minute}/min",
            "share_of_minute_limit": round(requests / drain_s * 60 / per_minute, 3),
            "cronofy_429_for_rate": stats["rate_limited"] - before.get("rate_limited", 0),
            "max_requests_in_1s": stats["max_per_second"], "max_requests_in_60s": stats["max_per_minute"],
            "lost": lost, "dead_letters": len(stack.queue_messages("MilestoneEventsDLQ")),
        }
    print(json.dumps(result, indent=2))
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "burst.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
