"""One source for the figures: the tables in docs/ are rendered from bench/results/*.json.

    python bench/docgen.py            # rewrite the generated sections and the chart (`make docs`)
    python bench/docgen.py --check    # exit 1 when a doc disagrees with the results files

A generated section sits between two marker comments, and only its inside is rewritten:

    <!-- generated:NAME -->
    ...
    <!-- /generated:NAME -->

NAME is a renderer registered below with `@renderer("NAME")`: a function from the results files
(`Results`, each file by its stem: `results["scale"]` is bench/results/scale.json) to Markdown. To add a
section: write the renderer, put the two markers in a doc, run `make docs`. The same NAME may appear in
several docs (the headline is in both benchmarks.md and capacity.md, so they cannot disagree).
tests/unit/test_docgen.py fails when a doc is out of date, a marker names no renderer, or a renderer is
used nowhere.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS = (ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "capacity.md", ROOT / "docs" / "design.md",
        ROOT / "docs" / "operations.md")
# The docs quoting the capacity headline: they cannot give different "latest" figures.
HEADLINE_DOCS = DOCS[:2]
CHART = ROOT / "docs" / "capacity-chart.png"
SECTION = re.compile(r"(<!-- generated:(?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- /generated:(?P=name) -->)", re.S)


class Results:
    """The results files, read once each, by stem; a missing one names the command that makes it."""

    def __init__(self, folder: Path = RESULTS) -> None:
        self.folder = folder
        self._loaded: dict[str, dict[str, Any]] = {}

    def __getitem__(self, stem: str) -> dict[str, Any]:
        if stem not in self._loaded:
            path = self.folder / f"{stem}.json"
            if not path.is_file():
                raise KeyError(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} is missing: "
                               "run the benchmark that writes it (docs/capacity.md, docs/benchmarks.md)")
            self._loaded[stem] = json.loads(path.read_text())
        return self._loaded[stem]


Renderer = Callable[[Results], str]
RENDERERS: dict[str, Renderer] = {}


def renderer(name: str) -> Callable[[Renderer], Renderer]:
    def register(fn: Renderer) -> Renderer:
        if name in RENDERERS:
            raise ValueError(f"two renderers named {name}")
        RENDERERS[name] = fn
        return fn
    return register


def _n(value: float, digits: int = 2) -> str:
    """1,512 / 10.62: thousands separated, `digits` decimals unless the value is whole."""
    if float(value).is_integer() and abs(value) >= 100:
        return f"{int(value):,}"
    return f"{value:,.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _limit(run: dict[str, Any]) -> tuple[int, int]:
    per_second, per_minute = run["cronofy"]["emulator_stats"]["rate_limit"]
    return per_second, per_minute


# ---- the renderers ----------------------------------------------------------------------------------


@renderer("headline")
def headline(results: Results) -> str:
    """The capacity benchmark's figures at 1,000 users x 7 days, as every doc quotes them."""
    after, before = results["scale"], results["scale-before"]
    c, per_minute = after["cronofy"], _limit(after)[1]
    return (
        f"`make bench-scale` ({after['config']['users']:,} users x {after['config']['days']} days, seed "
        f"{after['config']['seed']}; `bench/results/scale.json`): **{_n(c['per_user_per_working_day'])}** Cronofy "
        f"requests per user per working day ({_n(before['cronofy']['per_user_per_working_day'])} before, "
        f"{_n(c['naive_total_per_user_per_working_day'])} for a naive integration); busiest minute "
        f"{c['busiest_minute']} of Cronofy's {per_minute}, busiest hour {c['busiest_hour']:,} of "
        f"{per_minute * 60:,}, {c['over_limit_429']} requests over the limit; milestone -> calendar p50 / p99 "
        f"{_n(after['latency_seconds']['p50'])} / {_n(after['latency_seconds']['p99'])} s; calendar move -> "
        f"core platform p50 / p99 {_n(after['two_way_seconds']['p50'])} / {_n(after['two_way_seconds']['p99'])} s; "
        f"longest gap between two checks of a user {_n(after['reconciler']['longest_gap_hours'])} h; calendars "
        f"{'exact' if after['checks']['ok'] else 'WRONG'}; wall {_n(after['wall_seconds'], 0)} s.\n")


NAIVE_BY_FUNCTION = {
    "MilestonePush": ("milestone changes: event writes",),
    "NotificationProcessor": ("notifications: full re-reads",),
    "Reconciler": ("self-healing: hourly full re-reads",),
}
OTHERS = ("Backfill", "CalendarApi/OAuthCallback", "DeactivationCleanup")


@renderer("by-function")
def by_function(results: Results) -> str:
    after, before = results["scale"]["cronofy"], results["scale-before"]["cronofy"]
    naive = after["naive_per_user_per_working_day"]
    a, b = after["by_function_per_user_per_working_day"], before["by_function_per_user_per_working_day"]
    rows = [[name, _n(a.get(name, 0)), _n(b.get(name, 0)), _n(sum(naive[k] for k in keys))]
            for name, keys in NAIVE_BY_FUNCTION.items()]
    other_naive = sum(v for k, v in naive.items() if not any(k in keys for keys in NAIVE_BY_FUNCTION.values()))
    rows.append([", ".join(OTHERS), _n(sum(a.get(n, 0) for n in OTHERS)), _n(sum(b.get(n, 0) for n in OTHERS)),
                 _n(other_naive)])
    rows.append(["**all functions**", f"**{_n(after['per_user_per_working_day'])}**",
                 _n(before["per_user_per_working_day"]), _n(after["naive_total_per_user_per_working_day"])])
    ea, eb = after["by_endpoint_per_user_per_working_day"], before["by_endpoint_per_user_per_working_day"]
    for label, keys in (("... of which token refreshes", ("token (code exchange or refresh)",)),
                        ("... event writes (`/v1/batch`)", ("event writes (/v1/batch)",)),
                        ("... Read Events", ("Read Events",)),
                        ("... free/busy, channels", ("free/busy", "channels"))):
        rows.append([label, _n(sum(ea.get(k, 0) for k in keys)), _n(sum(eb.get(k, 0) for k in keys)), ""])
    return _table(["Cronofy requests per user per working day", "after", "before", "naive"], rows)


@renderer("busiest")
def busiest(results: Results) -> str:
    after, before = results["scale"], results["scale-before"]

    def column(run: dict[str, Any]) -> list[str]:
        c, r, per_minute = run["cronofy"], run["reconciler"], _limit(run)[1]
        latency = run.get("latency_seconds") or {}
        two_way = run.get("two_way_seconds")
        return [
            f"{c['busiest_minute']} of {per_minute} (reconciler {c['busiest_minute_reconciler']})",
            f"{c['busiest_hour']:,} of {per_minute * 60:,} (reconciler {c['busiest_hour_reconciler']:,})",
            str(c["over_limit_429"] if "over_limit_429" in c else c["emulator_stats"]["rate_limited"]),
            f"{r['visits']:,} visits, {_n(r['requests_per_visit'])} requests a visit",
            f"{_n(r['longest_gap_hours'])} h; {r['users_never_visited']} of {r['users_tracked']:,} never",
            f"{_n(latency['p50'])} / {_n(latency['p99'])} s" if latency else "",
            f"{_n(two_way['p50'])} / {_n(two_way['p99'])} s" if two_way else "",
            "exact" if run["checks"]["ok"] else "WRONG",
        ]

    labels = ["busiest minute (requests sent, of the limit)", "busiest hour", "requests over the limit (429s)",
              "reconciler", "longest gap between two checks of a user; never checked",
              "milestone message -> calendar write, p50 / p99", "calendar move -> core platform's queue, p50 / p99",
              "end check (every calendar against the expected state)"]
    rows = [[label, x, y] for label, x, y in zip(labels, column(after), column(before), strict=True)]
    return _table([f"at {after['config']['users']:,} users", "after", "before"], rows)


@renderer("quiet-day")
def quiet_day(results: Results) -> str:
    after, before = results["scale-quiet"], results["scale-before-quiet"]
    rows = [["Cronofy requests per user", f"**{_n(after['cronofy']['per_user_per_working_day'], 1)}**",
             _n(before["cronofy"]["per_user_per_working_day"])],
            ["lost events restored within the day",
             f"**{after['quiet_day']['restored']:,} of {after['quiet_day']['lost']:,}**",
             f"{before['quiet_day']['restored']:,} of {before['quiet_day']['lost']:,}"]]
    return _table(["quiet day (no changes; every user loses one event silently)", "after", "before"], rows)


TOKEN_RUNS = (("scale", "1 h (the default; 1,000 users)"), ("scale-200-users-3h-tokens", "3 h (200 users)"),
              ("scale-200-users-8h-tokens", "8 h (200 users)"), ("scale-200-users-24h-tokens", "24 h (200 users)"))


@renderer("token-lifetime")
def token_lifetime(results: Results) -> str:
    rows = []
    for stem, label in TOKEN_RUNS:
        c = results[stem]["cronofy"]
        e, f = c["by_endpoint_per_user_per_working_day"], c["by_function_per_user_per_working_day"]
        rows.append([label, _n(c["per_user_per_working_day"]), _n(e.get("token (code exchange or refresh)", 0)),
                     _n(e.get("event writes (/v1/batch)", 0)), _n(e.get("Read Events", 0)), _n(f.get("Reconciler", 0))])
    return _table(["access token lifetime", "all functions", "token refreshes", "writes", "Read Events", "reconciler"],
                  rows)


SIMULATIONS = ("scale-20000-users-1h-tokens", "scale-20000-users-3h-tokens", "scale-25000-users-1h-tokens")


@renderer("simulation")
def simulation(results: Results) -> str:
    rows = []
    for stem in SIMULATIONS:
        run = results[stem]
        sim, c, r = run["simulated"], run["cronofy"], run["reconciler"]
        per_minute, p99 = _limit(run)[1], sim["p99_busiest_hour_s"]
        rows.append([
            f"{sim['equivalent_users']:,} users, {_n(run['config']['token_hours'], 0)} h tokens "
            f"(1/{_n(sim['limit_scale'], 0)})",
            f"{c['busiest_minute']} of {per_minute} ({sim['busiest_minute_at_real_limits']} of "
            f"{int(per_minute * sim['limit_scale'])})",
            str(c["over_limit_429"]),
            f"{_n(p99['measured'])} s measured, **{_n(p99['scaled_back'], 1)} s** scaled back",
            f"{_n(sim['two_way_p99_s']['measured'], 1)} s / {_n(sim['two_way_p99_s']['scaled_back'], 1)} s",
            f"{_n(r['longest_gap_hours'])} h, {r['users_never_visited']} never",
            "exact" if run["checks"]["ok"] else "WRONG",
            f"{c['busiest_hour']:,}",
            "yes" if sim["all_met"] else "**no**",
        ])
    return _table(["simulated", "busiest minute at the emulator", "429s", "p99 milestone -> calendar, busiest hour",
                   "two-way p99 measured / scaled back", "longest visit gap", "calendars", "busiest hour sent",
                   "all conditions met"], rows)


# ---- make bench: the figures of the seven scripts (bench/results/<script>.json, stamped) -------------------

BENCH_FILES = ("cold_imports", "milestones", "webhook_intake", "busy_route", "availability", "enterprise_connect",
               "week")
SHORT = {"CalendarApiFunction": "calendar API", "OAuthCallbackFunction": "OAuth callback",
         "EnterpriseConnectFunction": "Enterprise Connect", "DeactivationCleanupFunction": "cleanup",
         "WebhookIntakeFunction": "webhook intake", "NotificationProcessorFunction": "notification processor",
         "MilestonePushFunction": "milestone push", "ReconcilerFunction": "reconciler", "BackfillFunction": "backfill"}


def _stamp(data: dict[str, Any]) -> str:
    """commit, date, settings, machine and load of one results file (bench/provenance.py)."""
    p = data.get("provenance")
    if not p:
        return "unstamped: written before results files carried their commit and date"
    m = p.get("machine") or {}
    commit = (p.get("commit") or "?")[:10] + (" (dirty)" if p.get("dirty") else "")
    settings = ", ".join(f"{k}={v}" for k, v in (data.get("settings") or {}).items()) or "defaults"
    load = m.get("load_average_at_start") or ["?"]
    end = m.get("load_average_at_end") or ["?"]
    return (f"commit {commit}, {p.get('date', '?')}, {settings}, {m.get('cpus', '?')} CPUs, Python "
            f"{m.get('python', '?')}, load {load[0]} at start, {end[0]} at end")


def _ms(value: float) -> str:
    return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"


def _ops(ops: dict[str, float]) -> str:
    return ", ".join(f"{_n(v, 1) if not float(v).is_integer() else int(v)} {op}" for op, v in ops.items())


def _cold_ratios(results: Results) -> tuple[float, dict[str, float], dict[str, dict[str, Any]]]:
    cold = results["cold_imports"]
    boto = cold["import boto3"]
    ratios = {f: ms / boto for f, ms in cold.items() if f in SHORT}
    return boto, ratios, results["week"]["paired_import_ratios"]


def _not_done(ec: dict[str, Any]) -> str:
    """Why members did not connect, from the first few the results file lists."""
    if ec["members_connected"] == ec["members"]:
        return ""
    reasons = sorted({f"{m['status']} ({m.get('reason') or m['connection_state']})" for m in ec["not_done"]})
    return (f" ({ec['members'] - ec['members_connected']} not connected; the first {len(ec['not_done'])} listed: "
            f"{', '.join(reasons)})")


@renderer("bench-figures")
def bench_figures(results: Results) -> str:
    """One row per `make bench` script: what it measured, from its results file."""
    ms, wi, br = results["milestones"], results["webhook_intake"], results["busy_route"]
    av, ec, wk = results["availability"], results["enterprise_connect"], results["week"]
    boto, ratios, paired = _cold_ratios(results)
    highest = max(paired, key=lambda f: paired[f]["median_ratio"])
    rows = [
        [f"backfill of {ms['milestones']:,} milestones (`bench/milestones.py`, median of {ms['runs']})",
         f"{_n(ms['backfill_cronofy_requests'], 0)} Cronofy requests ({_n(ms['backfill_batch_requests'], 0)} x "
         f"`/v1/batch`; the rest the OAuth exchange, calendars, channel, busy rebuild), "
         f"{_n(ms['backfill_seconds'], 1)} s wall", "`milestones.json`"],
        ["one SQS batch of 10 milestone changes (same script)",
         f"{_n(ms['sqs_batch_cronofy_requests'], 0)} Cronofy request(s), {ms['sqs_batch_seconds'] * 1000:,.0f} ms wall",
         "`milestones.json`"],
        [f"webhook intake, {wi['notifications']:,} signed `change` notifications, warm (`bench/webhook_intake.py`)",
         f"p50 {_n(wi['change']['p50_ms'])} ms, p99 {_n(wi['change']['p99_ms'])} ms (lookup, token, SQS send; moto "
         f"in-process); `verification` (HMAC only) p50 {_n(wi['verification']['p50_ms'])} ms; first of the "
         f"container (AWS clients built) {_ms(wi['first_change_ms'])} ms", "`webhook_intake.json`"],
        [f"busy route, {br['users']} users x {br['days']} days, {br['calls']} calls (`bench/busy_route.py`)",
         f"{br['cronofy_requests']} Cronofy requests; {_n(br['dynamodb_requests_per_call'], 0)} DynamoDB requests a "
         f"call ({_ops(br['dynamodb_operations'])}); p50 {_n(br['p50_ms'], 0)} ms, p99 {_n(br['p99_ms'], 0)} ms "
         "through the router in moto", "`busy_route.json`"],
        [f"crew availability, {av['users']} users x {av['days']} days, {av['calls']} calls, \"all\" and \"any 3\" "
         "(`bench/availability.py`)",
         f"{av['cronofy_requests']} Cronofy requests; {_n(av['dynamodb_requests_per_call'], 0)} DynamoDB requests a "
         f"call ({_ops(av['dynamodb_operations'])}); handler p50 {_n(av['p50_ms'], 0)} ms, p99 "
         f"{_n(av['p99_ms'], 0)} ms in moto, of which our code (DynamoDB time taken out) p50 "
         f"{_n(av['p50_ms_without_dynamodb'], 1)} ms, p99 {_n(av['p99_ms_without_dynamodb'], 1)} ms",
         "`availability.json`"],
        [f"Enterprise Connect, {ec['members']} members x {ec['milestones_per_member']} milestones, Cronofy's "
         f"{ec['limit']['per_second']}/s and {ec['limit']['per_minute']}/min enforced (`bench/enterprise_connect.py`)",
         f"{ec['members_connected']} of {ec['members']} connected{_not_done(ec)}, "
         f"{ec['backfills_succeeded_with_all_events']} "
         f"backfills with every event; {ec['cronofy_requests']:,} Cronofy requests "
         f"({_n(ec['cronofy_requests_per_member'])} a member), {ec['answered_429']} answered 429, busiest second "
         f"{ec['busiest_second']}, minute {ec['busiest_minute']}; {ec['member_callbacks_retried']} of "
         f"{ec['member_callbacks']} member callbacks delivered twice; members request answered in "
         f"{_n(ec['seconds_to_request'], 1)} s, all done in {_n(ec['seconds_total'], 0)} s",
         "`enterprise_connect.json`"],
        ["cold import of each handler (`bench/cold_imports.py`, fresh processes; table below)",
         f"`import boto3` {_n(boto, 0)} ms (median of {results['cold_imports'].get('settings', {}).get('RUNS', '?')});"
         f" handlers {_n(min(ratios.values()))}x-{_n(max(ratios.values()))}x of it (ratio of medians), highest by "
         f"alternating pairs {SHORT[highest]} {_n(paired[highest]['median_ratio'])}x", "`cold_imports.json`, "
                                                                                        "`week.json`"],
        [f"**a week at a {wk['result']['phases']['connect']['invocations'].get('OAuthCallbackFunction', 50)}-person "
         "installer** (`bench/week.py`; table below)",
         f"{_n(wk['summary']['week_requests_per_user_working_day'])} Cronofy requests per user per working day "
         f"(no reconciler), {_n(wk['summary']['ratio_to_naive'], 3)}x naive", "`week.json`"],
    ]
    return _table(["what", "figure", "bench/results/"], rows)


@renderer("bench-cold-imports")
def bench_cold_imports(results: Results) -> str:
    cold, week = results["cold_imports"], results["week"]
    boto, ratios, paired = _cold_ratios(results)
    rss = week["import_rss_mb"]
    rows = [["`import boto3`", _n(boto, 1), "1.00", "", ""]]
    for fid in sorted(ratios, key=lambda f: paired.get(f, {}).get("median_ratio", ratios[f])):
        p = paired.get(fid)
        rows.append([SHORT[fid], _n(cold[fid], 1), _n(ratios[fid]),
                     f"{_n(p['median_ratio'])} ({_n(p['min'])}-{_n(p['max'])})" if p else "",
                     _n(rss[fid], 0) if fid in rss else ""])
    return _table(["cold import", "median ms", "x boto3 (ratio of medians)",
                   f"x boto3, median of {next(iter(paired.values()))['pairs']} alternating pairs (range)",
                   "RSS MB after the import"], rows)


@renderer("bench-week")
def bench_week(results: Results) -> str:
    wk = results["week"]
    summary, result = wk["summary"], wk["result"]
    phases, rows_by = result["phases"], {r["what"]: r for r in summary["cronofy_rows"]}
    connect, during = phases["connect"], phases["week"]

    def ratio(r: dict[str, Any]) -> str:
        return f"{r['ours']:,} requests (naive {r['naive']:,}: {_n(r['ratio'], 3)}x)" if r["ratio"] is not None \
            else f"{r['ours']:,} requests"

    per_batch = summary["event_writes_per_batch_by_phase"]
    connect_row = next(r for r in summary["cronofy_rows"] if r["what"].startswith("connect"))
    br, e2e, checks = result["busy_route"], result["e2e_ms"], result["checks"]
    cal, busy = checks["calendars"], checks["busy"]
    aws = during["aws_by_operation"]
    dynamodb = sum(v for k, v in aws.items() if k.startswith("dynamodb."))
    sqs_sends = sum(v for k, v in aws.items() if k.startswith("sqs.Send"))
    kms = sum(v for k, v in aws.items() if k.startswith("kms."))
    fns = result["functions"]
    peaks = [f["peak_mb"] for f in fns.values() if f["peak_mb"] is not None]
    firsts = [f["first_invocation_peak_mb"] for f in fns.values() if f["first_invocation_peak_mb"]]
    rss = wk["import_rss_mb"].values()
    per_call = ", ".join(f"{n} calls {k}" for k, n in sorted(br["dynamodb_requests_per_call"].items()))
    sc = summary["synced_changes"]
    rows = [
        ["all Cronofy requests", f"{ratio(rows_by['all'])}; {_n(summary['cronofy_per_synced_change'], 3)} per synced "
         f"change (naive {_n(summary['naive_per_synced_change'], 3)}) over {sc['total']:,} changes; "
         f"{_n(summary['week_requests_per_user_working_day'])} per user per working day"],
        [f"... {connect_row['what']}", f"{ratio(connect_row)}; {_n(per_batch.get('connect', 0), 1)} event writes per "
         f"`/v1/batch`; {connect['sfn_executions']} executions, {connect['sfn_transitions']:,} state transitions"],
        [f"... live milestone changes ({sc['milestone_messages']:,} messages)",
         f"{ratio(rows_by['milestone changes'])}; {_n(per_batch.get('week', 0), 1)} event writes per `/v1/batch`"],
        ["... calendar notifications (moves, users' own events)", ratio(rows_by["calendar notifications"])],
        ["... scheduler busy views (org members x 14 days)",
         f"{ratio(rows_by['scheduler busy views'])}; {br['calls']} views, DynamoDB requests a view: {per_call}; "
         f"handler p50 {_n(br['handler_p50_ms'], 1)} ms, p99 {_n(br['handler_p99_ms'], 1)} ms"],
        [f"... disconnects and deactivations ({sc['disconnects_and_deactivations']})",
         f"{ratio(rows_by['disconnect + deactivation'])}; {summary['writes']['bulk_deletes']} bulk deletes"],
        ["... AWS requests in the week", f"DynamoDB {dynamodb:,}, KMS {kms:,}, SQS sends {sqs_sends:,}; invocations: "
         + ", ".join(f"{SHORT.get(f, f)} {n:,}" for f, n in sorted(during["invocations"].items(),
                                                                  key=lambda kv: -kv[1]))],
        [f"... end to end, message sent -> event on the calendar ({e2e['samples']} samples)",
         f"p50 {_n(e2e['p50'], 0)} ms, p99 {_n(e2e['p99'], 0)} ms locally (in AWS add up to the 2 s batching window)"],
        ["... memory", f"warm invocations peak at {_n(min(peaks), 1)}-{_n(max(peaks), 1)} MB of Python allocations "
         f"(tracemalloc); a function's first invocation up to {_n(max(firsts), 1)} MB (AWS clients); "
         f"{_n(min(rss), 0)}-{_n(max(rss), 0)} MB RSS after importing a handler"],
        ["... checks", f"calendars: {cal['missing']} missing, {cal['extra']} extra, {cal['wrong_time']} at a wrong "
         f"time, {cal['left_after_disconnect']} left after a disconnect; busy blocks right for "
         f"{busy['before_connect']['shown']} of {busy['before_connect']['users']} users with events before "
         f"connecting, {busy['during_week']['shown']} of {busy['during_week']['users']} added during the week"],
        ["... wall time", f"the workload {_n(result['workload_seconds'], 0)} s, all of `bench/week.py` "
         f"{_n(wk['wall_seconds'], 0)} s"],
    ]
    return _table([f"the week (seed {wk['seed']})", "figure"], rows)


@renderer("bench-targets")
def bench_targets(results: Results) -> str:
    return "".join(f"- [{'ok' if t['holds'] else 'NO'}] {t['target']}: {t['measured']}\n"
                   for t in results["week"]["result"]["targets"])


@renderer("bench-cost")
def bench_cost(results: Results) -> str:
    cost = results["week"]["cost"]
    steady, onboarding = cost["steady_state"], cost["onboarding_1000_users"]
    lines = sorted(steady["per_1000_users_month"].items(), key=lambda kv: -kv[1]["usd"])

    def quantity(q: float) -> str:
        return f"{q / 1e6:,.2f} M" if q >= 1e6 else f"{q / 1e3:,.0f} k" if q >= 1e3 else f"{q:,.0f}"

    rows = [[name, quantity(line["quantity"]), f"{line['usd']:.2f}"] for name, line in lines]
    rows.append(["**total**", "", f"**{steady['usd_per_1000_users_month']:.2f}** "
                                  f"(~${steady['usd_per_user_month']:.4f} per user)"])
    fixed = "; ".join(f"{k} ${v:.2f}" for k, v in steady["fixed_usd_month"].items())
    prices, latency = cost["prices"], cost["latency_assumptions"]
    listed = (f"Lambda ${prices['lambda_request'] * 1e6:.2f} per million requests and "
              f"${prices['lambda_gb_second_arm64']:.10f} per GB-s (arm64); DynamoDB "
              f"${prices['dynamodb_wru'] * 1e6:.3f} per million write and ${prices['dynamodb_rru'] * 1e6:.3f} per "
              "million read request units; SQS "
              f"${prices['sqs_request'] * 1e6:.2f} per million requests; Step Functions "
              f"${prices['sfn_transition'] * 1e3:.3f} per 1,000 state transitions; HTTP API "
              f"${prices['apigw_http_request'] * 1e6:.2f} per million requests; KMS ${prices['kms_request'] * 1e4:.2f} "
              f"per 10,000 requests and ${prices['kms_key_month']:.0f} per key-month; Secrets Manager "
              f"${prices['secret_month']:.2f} per secret-month and ${prices['secrets_request'] * 1e4:.2f} per 10,000 "
              f"calls; Lambda duration = local handler time + {latency['cronofy_request_s'] * 1000:.0f} ms per Cronofy "
              f"request + {latency['aws_request_s'] * 1000:.0f} ms per AWS request")
    return (f"Prices ({cost['prices_as_of']}; `bench/costmodel.py`): {listed}.\n\n"
            + _table(["per 1,000 users per month", "quantity", "USD"], rows)
            + f"\nThe week scaled by {_n(steady['scale'], 1)}. Per stack, whatever the users: {fixed}. Onboarding "
            f"1,000 users (connect + backfill) once: ${onboarding['usd_per_1000_users_month']:.2f}.\n")


@renderer("bench-provenance")
def bench_provenance(results: Results) -> str:
    return "".join(f"- `bench/results/{stem}.json`: {_stamp(results[stem])}\n" for stem in BENCH_FILES)


@renderer("enterprise-connect")
def enterprise_connect(results: Results) -> str:
    """docs/design.md's Enterprise Connect figures, from the same file as benchmarks.md's row."""
    ec = results["enterprise_connect"]
    by = ec["by_endpoint"]
    endpoints = ", ".join(f"{n:,} `{k}`" for k, n in by.items())
    return (f"`bench/enterprise_connect.py` (part of `make bench`; `bench/results/enterprise_connect.json`, "
            f"{_stamp(ec)}) connects {ec['members']} members, {ec['milestones_per_member']} scheduled milestones "
            f"each, with the emulator enforcing {ec['limit']['per_second']}/s and {ec['limit']['per_minute']}/min: "
            f"{ec['cronofy_requests']:,} Cronofy requests ({_n(ec['cronofy_requests_per_member'])} per member: "
            f"{endpoints}), {ec['answered_429']} answered 429, busiest second {ec['busiest_second']} and busiest "
            f"minute {ec['busiest_minute']}; {ec['members_connected']} of {ec['members']} members "
            f"`connected`{_not_done(ec)}, "
            f"{ec['backfills_succeeded_with_all_events']} with their backfill `succeeded` and all their events on "
            f"their primary calendar; {ec['member_callbacks_retried']} of {ec['member_callbacks']} member callbacks "
            f"needed a second delivery; {_n(ec['seconds_total'], 0)} s wall on this 2-core machine.\n")


@renderer("tracer-cost")
def tracer_cost(results: Results) -> str:
    """docs/operations.md: what Powertools' Tracer would add to each cold start (bench/cold_imports.py with
    XRAY_SDK_PATH)."""
    data = results["tracer_imports"]
    added = {f: ms for f, ms in data.items() if f in SHORT}
    top = max(added, key=added.get)
    return (f"`Tracer()` (as in Lambda: enabled, botocore and requests patched) adds a median of "
            f"{_n(min(added.values()), 0)} to {_n(max(added.values()), 0)} ms to a cold start after the handler "
            f"module is imported, the {SHORT[top]} the most ({_n(added[top], 0)} ms) "
            f"(`bench/results/tracer_imports.json`, {_stamp(data)}).\n")


CHANNEL_LISTING = (("scale-100-users-channel-list-weekly", "before"), ("scale-100-users-channel-list-daily", "after"))


@renderer("channel-listing")
def channel_listing(results: Results) -> str:
    """docs/benchmarks.md, issue 20 finding 3: the channel listed weekly (before) and daily (after), 100 users."""
    runs = [results[stem] for stem, _ in CHANNEL_LISTING]

    def reconciler(run: dict[str, Any]) -> str:
        c = run["cronofy"]
        channels = c["by_endpoint_per_user_per_working_day"].get("channels", 0)
        return _n(c["by_function_per_user_per_working_day"]["Reconciler"]) + (
            f" (`GET /v1/channels` {_n(channels)})" if channels >= 0.01 else "")

    ceiling = [run["ceiling"] for run in runs]
    rows = [["Cronofy requests per user per working day, all functions",
             *(_n(run["cronofy"]["per_user_per_working_day"]) for run in runs)],
            ["of them the reconciler", *(reconciler(run) for run in runs)],
            [f"reconciler requests per visit ({' / '.join(sorted({str(run['reconciler']['visits']) for run in runs}))}"
             " visits)",
             *(_n(run["reconciler"]["requests_per_visit"]) for run in runs)],
            ["model ceiling, one application (`ceiling()` of bench/scale.py: an estimate, see capacity.md)",
             *(f"{c['users']:,} users (latency bound {c['latency_bound']:,}, reconciler bound "
               f"{c['reconciler_bound']:,})" for c in ceiling)]]
    return _table(["", *(label for _, label in CHANNEL_LISTING)], rows)


# ---- the chart ----------------------------------------------------------------------------------------


CHART_RUNS = (("scale-before", "before\n1,000"), ("scale", "after\n1,000"),
              ("scale-20000-users-1h-tokens", "after\n20,000 (sim.)"), ("scale-25000-users-1h-tokens",
                                                                        "after\n25,000 (sim.)"))


def _direct_runs(name: str) -> Renderer:
    """A section of bench/capacity_report.py: the direct runs (issue 21), from the same results folder."""

    def render(results: Results) -> str:
        from bench import capacity_report

        return capacity_report.sections(results.folder)[name]

    return render


for _name in ("capacity-must-hold", "capacity-by-function", "capacity-by-org"):
    renderer(_name)(_direct_runs(_name))


def chart(results: Results, path: Path = CHART) -> None:
    """Busiest hour and minute against Cronofy's limit, and latency, per run (PNG, matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(results[stem], label) for stem, label in CHART_RUNS]
    labels = [label for _, label in runs]
    hour = [100 * run["cronofy"]["busiest_hour"] / (_limit(run)[1] * 60) for run, _ in runs]
    minute = [100 * run["cronofy"]["busiest_minute"] / _limit(run)[1] for run, _ in runs]
    p99 = [run["simulated"]["p99_busiest_hour_s"]["scaled_back"] if "simulated" in run
           else run["latency_seconds"]["p99"] for run, _ in runs]
    p50 = [run["latency_seconds"]["p50"] if "simulated" not in run else float("nan") for run, _ in runs]

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    x = range(len(runs))
    left.bar([i - 0.2 for i in x], hour, width=0.4, label="busiest hour")
    left.bar([i + 0.2 for i in x], minute, width=0.4, label="busiest minute")
    left.axhline(100, color="black", linewidth=1)
    left.axhline(95, color="grey", linestyle="--", linewidth=1)
    left.text(len(runs) - 0.5, 96.5, "95%: the limiter's ceiling", ha="right", fontsize=8, color="grey")
    left.set_xticks(list(x), labels, fontsize=8)
    left.set_ylabel("% of Cronofy's limit (500 a minute, 30,000 an hour)")
    left.set_title("Cronofy requests against the limit")
    left.legend(fontsize=8, loc="upper left")
    right.bar([i - 0.2 for i in x], p50, width=0.4, label="p50")
    right.bar([i + 0.2 for i in x], p99, width=0.4, label="p99 (simulations: busiest hour, scaled back)")
    right.axhline(120, color="black", linewidth=1)
    right.text(len(runs) - 0.5, 113, "target: p99 <= 2 minutes", ha="right", fontsize=8)
    right.set_xticks(list(x), labels, fontsize=8)
    right.set_ylabel("seconds")
    right.set_ylim(0, 130)
    right.set_title("milestone message -> calendar write")
    right.legend(fontsize=8, loc="upper left")
    fig.suptitle("make bench-scale, from bench/results/ (bench/docgen.py)", fontsize=9)
    fig.tight_layout()
    # No timestamp in the file: the same results give the same PNG.
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


# ---- rewriting the docs ---------------------------------------------------------------------------------


def render(text: str, results: Results) -> str:
    """`text` with every generated section rendered anew."""

    def section(found: re.Match[str]) -> str:
        name = found["name"]
        if name not in RENDERERS:
            raise KeyError(f"no renderer named {name!r} (bench/docgen.py): one of {', '.join(sorted(RENDERERS))}")
        return f"{found[1]}{RENDERERS[name](results)}{found[4]}"

    return SECTION.sub(section, text)


def sections(text: str) -> list[str]:
    return [found["name"] for found in SECTION.finditer(text)]


def main(argv: list[str]) -> int:
    results = Results()
    stale = []
    for doc in DOCS:
        text = doc.read_text()
        rendered = render(text, results)
        if rendered != text:
            stale.append(doc)
            if "--check" not in argv:
                doc.write_text(rendered)
    if "--check" in argv:
        for doc in stale:
            print(f"{doc.relative_to(ROOT)} disagrees with bench/results/: run `make docs`", file=sys.stderr)
        return 1 if stale else 0
    chart(results)
    from bench import capacity_report

    drawn = [CHART, *capacity_report.charts(results.folder, ROOT / "docs")]
    for doc in stale:
        print(f"rewrote {doc.relative_to(ROOT)}")
    for path in drawn:
        print(f"drew {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
