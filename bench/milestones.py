"""Issue 3's figures: a backfill of 1,000 milestones and one SQS batch of 10 milestone changes,
through the local stack (real handlers, the real ASL under moto, the Cronofy emulator).

Prints Cronofy requests and wall time (median of RUNS runs) and writes bench/results/milestones.json.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "core")]
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")

from bench import provenance  # noqa: E402
from localdev import browser  # noqa: E402
from localdev.builders import in_days, milestone  # noqa: E402
from localdev.stack import DevStack  # noqa: E402


def one_run(n: int) -> dict:
    with DevStack() as stack:
        account = stack.emulator.add_calendar_account("google", "crew@example.com",
                                                      calendars=[{"name": "Work", "primary": True}])
        for i in range(0, n, 10):
            batch = [milestone(f"ms_{j}", 1, ["u_crew"], in_days(-29 + j % 200)) for j in range(i, i + 10)]
            stack.invoke("MilestonePushFunction", stack.sqs_event("MilestoneEventsQueue", batch))
        session = stack.browser("u_crew", "org_sunbright")
        stack.emulator.clear_request_log()
        started = time.perf_counter()
        outcome = browser.connect(session, stack.base_url, "google", account["profile_id"])
        stack.drain()
        backfill_s = time.perf_counter() - started
        assert outcome["calendar_sync"] == "connected"
        status = session.get(stack.url("/v1/calendar/connection")).json()
        assert status["backfill"]["done"] == n, status
        backfill_requests = len(stack.emulator.request_log)
        backfill_batches = stack.emulator.count_requests(method="POST", path_prefix="/v1/batch")

        changes = [milestone(f"ms_{j}", 2, ["u_crew"], in_days(5 + j)) for j in range(10)]
        event = stack.sqs_event("MilestoneEventsQueue", changes)
        stack.emulator.clear_request_log()
        started = time.perf_counter()
        result = stack.invoke("MilestonePushFunction", event)
        batch_s = time.perf_counter() - started
        assert result["batchItemFailures"] == []
        return {"backfill_seconds": backfill_s, "backfill_cronofy_requests": backfill_requests,
                "backfill_batch_requests": backfill_batches, "sqs_batch_seconds": batch_s,
                "sqs_batch_cronofy_requests": len(stack.emulator.request_log)}


def main() -> dict:
    provenance.provenance()  # stamped at the start: the commit the run started from, and the load then
    runs = int(os.environ.get("RUNS", "3"))
    n = int(os.environ.get("MILESTONES", "1000"))
    samples = []
    for i in range(runs):
        print(f"  run {i + 1} of {runs}: backfill of {n} milestones, then one SQS batch ...", file=sys.stderr,
              flush=True)
        samples.append(one_run(n))
    summary = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    summary["milestones"] = n
    summary["runs"] = runs
    print(f"backfill of {n} milestones: {summary['backfill_cronofy_requests']:.0f} Cronofy requests "
          f"({summary['backfill_batch_requests']:.0f} x /v1/batch, the rest OAuth/calendars/channel), "
          f"wall {summary['backfill_seconds']:.2f} s (median of {runs})")
    print(f"one SQS batch of 10 milestone changes: {summary['sqs_batch_cronofy_requests']:.0f} Cronofy request(s), "
          f"wall {summary['sqs_batch_seconds'] * 1000:.0f} ms")
    provenance.write("milestones", summary, {"RUNS": runs, "MILESTONES": n})
    return summary


if __name__ == "__main__":
    main()
