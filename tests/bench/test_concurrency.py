"""The capacity benchmark's concurrency in virtual time (issue 21 item 3): the scheduler of bench/scale.py
with the service's real limiter and Cronofy client (in a subprocess: importing bench/scale.py replaces
time.sleep and boto3's clients for its whole process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = textwrap.dedent("""
    import json, time
    from datetime import UTC, datetime
    import greenlet, time_machine
    from bench import scale
    from calsync.cronofy import CronofyApp
    from calsync.ratelimit import RateLimiter
    from localdev import template

    scale.DDB.create_table(TableName="t", **template.table_definition(template.load())[1])
    db = scale.DDB
    out = {}
    T0 = datetime(2026, 11, 30, 10, tzinfo=UTC).timestamp()
""")


def run_snippet(body: str) -> dict:
    code = PRELUDE + textwrap.dedent("""
        with time_machine.travel(T0, tick=False) as traveller:
            scale.VirtualClock.traveller, scale.VirtualClock.main = traveller, greenlet.getcurrent()
            sched = scale.VirtualClock.sim = scale.Scheduler()
    """) + textwrap.indent(textwrap.dedent(body), "    ") + "\nprint(json.dumps(out))\n"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'layers' / 'core'}:{ROOT}")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_process_waiting_for_budget_does_not_delay_an_unrelated_one():
    """One invocation drains the shared limiter's burst and sleeps for more (the real client's wait); an
    unrelated one due meanwhile runs at its own time, and the waiting one resumes when its budget comes."""
    out = run_snippet("""
        limiter = RateLimiter(db, "t")  # Cronofy's limits: burst 40, then 7.25/s
        app = CronofyApp("id", "secret", "http://cronofy.invalid", "http://app.invalid", limiter=limiter,
                         max_limiter_wait=60)

        def greedy():
            for _ in range(60):
                app._take_token("GET", "http://cronofy.invalid/v1/events")
            out["greedy_done_at"] = time.time() - T0

        def unrelated():
            out["unrelated_ran_at"] = time.time() - T0
            out["greedy_done_when_unrelated_ran"] = "greedy_done_at" in out

        sched.at(T0, greedy)
        sched.at(T0 + 0.5, unrelated)
        sched.run_until(T0 + 3600)
        out["late"], out["live"] = sched.late_events, sched.live
        out["outside_sleeps"] = scale.VirtualClock.outside_sleeps
    """)
    assert out["unrelated_ran_at"] == 0.5 and not out["greedy_done_when_unrelated_ran"]
    assert 20 / 7.25 - 0.2 <= out["greedy_done_at"] <= 20 / 7.25 + 0.5  # 40 at once, 20 more at 7.25/s
    assert out["late"] == 0 and out["outside_sleeps"] == 0 and out["live"] == 0


def test_overlapping_invocations_race_on_the_limiter_item_and_never_exceed_it():
    """Eight processes take budget from the one limiter item at once (DynamoDB answering after its stated
    latency, each Cronofy request's answer after a random one): their read-then-conditional-writes collide
    and retry, and no window of the sliding limits sees more than the bucket allows."""
    out = run_snippet("""
        import random
        limiter = RateLimiter(db, "t")
        app = CronofyApp("id", "secret", "http://cronofy.invalid", "http://app.invalid", limiter=limiter,
                         max_limiter_wait=600)
        rng = random.Random(1)
        sent, lost = [], [0]
        write = limiter._write_tat

        def counted(old, new):
            ok = write(old, new)
            lost[0] += not ok
            if not ok:
                out.setdefault("conflict_at", time.time() - T0)
            return ok

        limiter._write_tat = counted
        scale.install_dynamodb_latency(1)  # the read and the conditional write are two answered requests

        def invocation(n):
            for _ in range(60):
                app._take_token("POST", "http://cronofy.invalid/v1/batch")
                sent.append(time.time())
                time.sleep(rng.lognormvariate(-1.9, 1.0))  # the answer's latency

        for n in range(8):
            sched.at(T0, invocation, n)
        sched.run_until(T0 + 3600)
        sent.sort()
        out["sent"], out["lost"] = len(sent), lost[0]
        out["max_per_second"] = max(sum(1 for u in sent if t <= u < t + 1) for t in sent)
        out["max_per_minute"] = max(sum(1 for u in sent if t <= u < t + 60) for t in sent)
        out["late"], out["live"] = sched.late_events, sched.live
    """)
    assert out["sent"] == 480 and out["live"] == 0 and out["late"] == 0
    assert out["lost"] > 0  # the invocations really raced on the item
    assert out["max_per_second"] <= 50 and out["max_per_minute"] <= 500, out
