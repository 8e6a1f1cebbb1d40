"""The capacity benchmark (bench/scale.py) at a tiny scale, so CI exercises the harness: 20 users, one
simulated day (in a subprocess: the harness replaces time.sleep, boto3's clients and requests'
transport for its whole process). Checks the invariants any design must keep, not the figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_scale(tmp_path: Path, *args: str) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "scale.json"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'layers' / 'core'}:{ROOT}")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "scale.py"), "--out", str(out), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "capacity ceiling" in done.stdout
    return json.loads(out.read_text())


def test_a_small_day_keeps_every_invariant(tmp_path):
    r = run_scale(tmp_path, "--users", "20", "--days", "1", "--seed", "3")
    c = r["cronofy"]
    assert c["over_limit_429"] == 0
    assert c["counted"]["at_emulator"] == c["counted"]["attributed"] and c["counted"]["unattributed"] == 0
    assert c["busiest_minute"] <= 500 and c["busiest_second"] <= 50
    assert r["checks"]["ok"], r["checks"]
    assert r["reconciler"]["users_never_visited"] == 0
    assert r["reconciler"]["longest_gap_hours"] <= 24
    assert r["reconciler"]["runs"] == 288  # every 5-minute boundary of the day
    assert r["setup"]["users_connected"] == 20 and r["setup"]["cronofy_requests"] > 0
    assert set(c["by_function"]) == {"MilestonePush", "NotificationProcessor", "Reconciler", "Backfill",
                                      "CalendarApi/OAuthCallback", "DeactivationCleanup"}
    assert c["by_function"]["MilestonePush"] > 0 and c["other"] == 0
    assert r["latency_seconds"]["samples"] > 0 and r["latency_seconds"]["p99"] <= 120
    assert not any(r["dlq"].values()) and r["backfills"]["failed"] == 0
    assert r["ceiling"]["users"] > 0
    # concurrency in virtual time (issue 21 item 3): invocations overlapped, within Cronofy's limits (above),
    # the measured period ran wholly in the scheduler's processes and no event ran after its time
    cc = r["concurrency"]
    assert cc["peak_concurrent"] >= 2 and sum(cc["invocations_overlapping_another"].values()) > 0, cc
    assert cc["clock_moved_by_a_sleep_in_the_period"] == 0 and cc["events_run_late_in_the_period"] == 0
    assert cc["sqs_concurrency_by_function"]["MilestonePushFunction"] == 999  # the account's unreserved
    assert cc["reserved_concurrency"] == {"ReconcilerFunction": 1} and not cc["invocations_past_their_timeout"]
    assert cc["limiter_write_conflicts"]["writes"] > 0 and not cc["token_refreshes"].get("invalid_grant")
    # the run is stamped (commit, date, arguments, machine) and prints issue 21's conditions, measured
    prov = r["provenance"]
    assert len(prov["commit"]) == 40 and prov["arguments"][:2] == ["--out", str(tmp_path / "scale.json")]
    assert prov["machine"]["cpus"] >= 1 and prov["date"].startswith("20") and r["generated_at"] == prov["date"]
    mh = r["must_hold"]
    assert mh["direct"] and mh["users"] == 20 and len(mh["conditions"]) == 8 and mh["all_hold"], mh
    # seeded steady state: every initial user was last checked in the 24 h before the period
    assert r["reconciler"]["gaps_over_24h"] == 0
    ch = r["charts"]
    assert sum(sum(v) for v in ch["requests_per_minute_by_function"].values()) == c["total"] - c["other"]
    assert len(ch["milestone_to_calendar_cdf_s"]) == 100 and ch["published_by_type"]["calendar.connection_changed"]
    # the report renders the results as markdown and PNG charts
    from bench import capacity_report

    sections = capacity_report.sections(tmp_path)
    assert "20 users, gentle world, 1 h tokens" in sections["capacity-must-hold"]
    assert "| **all functions** |" in sections["capacity-by-function"]
    written = capacity_report.charts(tmp_path, tmp_path / "charts")
    assert [p.name for p in written] == ["capacity-requests-per-minute.png", "capacity-latency-cdf.png",
                                         "capacity-p99-by-org.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written)


def test_the_quiet_day_restores_every_lost_event(tmp_path):
    r = run_scale(tmp_path, "--users", "10", "--quiet-day", "--seed", "4")
    assert r["quiet_day"]["lost"] == 10 and r["quiet_day"]["all_restored"]
    assert r["checks"]["ok"], r["checks"]


def test_the_rough_world_runs_its_profile(tmp_path):
    """--world rough: orgs of different sizes in four zones, a weather day, faults at stated rates; every
    request still counted once (random 5xx and 429 answers included)."""
    r = run_scale(tmp_path, "--users", "40", "--days", "1", "--seed", "5", "--world", "rough")
    assert r["world"] == "rough" and set(r["rough_world"]["zones"][0]) >= {"America/New_York"}
    assert r["period"]["orgs"] >= 2
    assert r["weather_day"]["milestones"] > 0 and r["weather_day"]["p99_s"] is not None
    c = r["cronofy"]
    assert c["counted"]["at_emulator"] == c["counted"]["attributed"] and c["counted"]["unattributed"] == 0
    assert c["over_limit_429"] == 0 and c["busiest_second"] <= 50
    assert len(r["must_hold"]["conditions"]) == 8


def test_the_same_seed_gives_the_same_counts_with_invocations_overlapping(tmp_path):
    """Concurrency keeps determinism: the scheduler orders equal times by when they were scheduled and every
    latency and fault is drawn from the run's seed, so two runs count the same requests (+-1%)."""
    from bench.capacity_report import same_counts

    a = run_scale(tmp_path / "a", "--users", "30", "--days", "1", "--seed", "8", "--world", "rough")
    b = run_scale(tmp_path / "b", "--users", "30", "--days", "1", "--seed", "8", "--world", "rough")
    assert sum(a["concurrency"]["invocations_overlapping_another"].values()) > 0
    assert same_counts(a, b)["same"], same_counts(a, b)


def test_same_counts_allows_one_percent_and_no_more():
    from bench.capacity_report import same_counts

    def run(push: int, rec: int) -> dict:
        return {"cronofy": {"by_function": {"MilestonePush": push, "Reconciler": rec}, "total": push + rec}}

    assert same_counts(run(1000, 200), run(1010, 200))["same"]
    check = same_counts(run(1000, 200), run(1000, 203))
    assert not check["same"] and not check["rows"]["Reconciler"]["within"] and check["rows"]["total"]["within"]


def test_a_message_is_matched_only_to_its_own_write():
    """bench/scale.py match_writes (in a subprocess: importing the harness patches the process)."""
    code = """
import json
from bench.scale import match_writes
sent = [(100.0, "m", "S1", "new", False), (200.0, "m", "S2", "reschedule", False),
        (300.0, "m", "S1", "reschedule", False), (400.0, "a", "S3", "applied", True)]
writes = {"sn-m": [(110.0, "S1"), (210.0, "S2"), (305.0, "S1")], "sn-a": [(9000.0, "S3")]}
print(json.dumps(sorted(match_writes(sent, writes))))
"""
    rows = _matched(code)
    assert rows[(100.0, "m")] == 10.0 and rows[(200.0, "m")] == 10.0 and rows[(300.0, "m")] == 5.0
    assert rows[(400.0, "a")] == 0.0  # already on the calendar: no write is due


def test_a_superseded_message_is_not_matched_to_a_later_write_of_its_start():
    code = """
import json
from bench.scale import match_writes
sent = [(100.0, "m", "S1", "applied", False), (150.0, "m", "S2", "reschedule", False),
        (5000.0, "m", "S1", "reschedule", False)]
writes = {"sn-m": [(160.0, "S2"), (5005.0, "S1")]}
print(json.dumps(sorted(match_writes(sent, writes))))
"""
    rows = _matched(code)
    assert rows[(100.0, "m")] is None  # superseded (was matched to the write at 5005 s: 4905 s)
    assert rows[(150.0, "m")] == 10.0 and rows[(5000.0, "m")] == 5.0


def _matched(code: str) -> dict:
    """bench.scale.match_writes run in a fresh interpreter (scale.py patches clocks on import): (sent at,
    milestone) -> seconds to its write."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'layers' / 'core'}:{ROOT}")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return {(t, mid): dt for t, mid, _start, dt in json.loads(done.stdout.strip().splitlines()[-1])}


def test_only_a_message_every_assignee_lost_the_grant_right_after_waits_for_their_relink():
    """bench/scale.py held_for_relink: the wait is the user's only when every assignee it could be written
    for lost the grant within 120 s of the message and relinked before the write; otherwise it is a sample."""
    code = """
import json
from types import SimpleNamespace
from bench.scale import held_for_relink
sim = SimpleNamespace(standing_at={(100.0, "m"): frozenset({"a"}), (100.0, "two"): frozenset({"a", "b"}),
                                   (100.0, "late"): frozenset({"c"})},
                      reauth_periods={"a": [150.0, 5000.0], "b": [], "c": [400.0, 5000.0]})
print(json.dumps([held_for_relink(sim, 100.0, "m", 5010.0),      # lost 50 s later, relinked, then written
                  held_for_relink(sim, 100.0, "m", 4000.0),      # written before the relink: not held by it
                  held_for_relink(sim, 100.0, "two", 5010.0),    # b could be written all along
                  held_for_relink(sim, 100.0, "late", 5010.0)])) # lost 300 s later: the service was late
"""
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'layers' / 'core'}:{ROOT}")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [True, False, False, False]
