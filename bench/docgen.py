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
DOCS = (ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "capacity.md")
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
