"""Renders the capacity results (bench/results/scale*.json, written by bench/scale.py) for docs/capacity.md:
markdown tables and PNG charts, so the figures in the docs come from the results files and nothing else.

    PYTHONPATH=layers/core:. .venv/bin/python bench/capacity_report.py            # print the sections
    ... bench/capacity_report.py --charts docs                                     # and write the PNGs

For a docs generator (bench/docgen.py): `sections(results_dir) -> {name: markdown}` and
`charts(results_dir, out_dir) -> [paths written]`. Only files carrying `must_hold` (bench/scale.py since
issue 21) are direct-run results; older files are left out rather than mixed in.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def load(results_dir: Path | str = RESULTS) -> list[tuple[str, dict]]:
    """(file name, results) of every direct-run results file: rough world first, the largest run first."""
    found = []
    for path in sorted(Path(results_dir).glob("scale*.json")):
        try:
            r = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(r, dict):
            continue
        config = r.get("config") or {}
        # the one-day direct runs (issue 21's), not make bench-scale's weeks or its quiet day
        if r.get("must_hold") and config.get("days") == 1 and not config.get("quiet_day"):
            found.append((path.name, r))
    # the rough world (what production is like) first, then the gentle one; the largest first in each, then
    # the shortest tokens, then the newest (a run repeated after a change stands beside the one before it)
    found.sort(key=lambda fr: (fr[1].get("provenance") or {}).get("date") or "", reverse=True)
    found.sort(key=lambda fr: (fr[1].get("world") != "rough", -fr[1]["period"]["users"],
                               fr[1]["must_hold"]["token_hours"]))
    return found


def _stamp(r: dict) -> str:
    p = r.get("provenance") or {}
    m = p.get("machine") or {}
    commit = (p.get("commit") or "?")[:10] + (" (dirty)" if p.get("dirty") else "")
    return (f"commit {commit}, {p.get('date', '?')}, `{' '.join(p.get('arguments') or [])}`, "
            f"{m.get('cpus', '?')} CPUs, Python {m.get('python', '?')}, "
            f"load {m.get('load_average_at_start', m.get('load_average_at_end'))} at start")


def _label(r: dict) -> str:
    commit = ((r.get("provenance") or {}).get("commit") or "?")[:7]
    return (f"{r['period']['users']:,} users, {r.get('world', 'gentle')} world, "
            f"{r['must_hold']['token_hours']:g} h tokens ({commit})")


def must_hold_table(runs: list[tuple[str, dict]]) -> str:
    if not runs:
        return "_No direct-run results yet._\n"
    head = "| condition | " + " | ".join(_label(r) for _, r in runs) + " |"
    lines = [head, "|---|" + "---|" * len(runs)]
    names = list(runs[0][1]["must_hold"]["conditions"])
    for name in names:
        cells = []
        for _, r in runs:
            c = r["must_hold"]["conditions"].get(name)
            cells.append("-" if c is None else f"{'ok' if c['holds'] else '**FAIL**'}: {c['measured']}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| all hold | " + " | ".join(
        "**yes**" if r["must_hold"]["all_hold"] else "**no**" for _, r in runs) + " |")
    lines.append("")
    lines += [f"- `{name}`: {_stamp(r)}; wall {r.get('wall_seconds')} s, phases {r.get('phases')}"
              for name, r in runs]
    return "\n".join(lines) + "\n"


def by_function_table(runs: list[tuple[str, dict]]) -> str:
    if not runs:
        return "_No direct-run results yet._\n"
    lines = ["| Cronofy requests per user per working day | " + " | ".join(_label(r) for _, r in runs) + " |",
             "|---|" + "---|" * len(runs)]
    functions = list(runs[0][1]["cronofy"]["by_function_per_user_per_working_day"])
    for f in functions:
        lines.append(f"| {f} | " + " | ".join(
            f"{r['cronofy']['by_function_per_user_per_working_day'].get(f, 0):.2f}" for _, r in runs) + " |")
    lines.append("| **all functions** | " + " | ".join(
        f"**{r['cronofy']['per_user_per_working_day']:.2f}**" for _, r in runs) + " |")
    endpoints: list[str] = []
    for _, r in runs:
        endpoints += [e for e in r["cronofy"]["by_endpoint_per_user_per_working_day"] if e not in endpoints]
    for e in endpoints:
        lines.append(f"| ... {e} | " + " | ".join(
            f"{r['cronofy']['by_endpoint_per_user_per_working_day'].get(e, 0):.2f}" for _, r in runs) + " |")
    return "\n".join(lines) + "\n"


def org_table(runs: list[tuple[str, dict]], worst: int = 10) -> str:
    if not runs:
        return "_No direct-run results yet._\n"
    _, r = runs[0]
    by_org = r["latency_seconds"].get("p99_by_org") or {}
    top = sorted(by_org.items(), key=lambda kv: -kv[1])[:worst]
    lines = [f"p99 milestone -> calendar write per org ({r['period']['users']:,} users; the {len(top)} slowest of "
             f"{len(by_org)} orgs):", "", "| org | p99 s |", "|---|---|"]
    lines += [f"| {org} | {v} |" for org, v in top]
    return "\n".join(lines) + "\n"


def same_counts(a: dict, b: dict, tolerance: float = 0.01) -> dict:
    """Two runs of the same seed and arguments: Cronofy requests by function within `tolerance` (issue 21:
    same seed, same request counts +-1%)."""
    fa, fb = a["cronofy"]["by_function"], b["cronofy"]["by_function"]
    rows = {}
    for f in sorted(set(fa) | set(fb)):
        x, y = fa.get(f, 0), fb.get(f, 0)
        rows[f] = {"a": x, "b": y, "within": abs(x - y) <= tolerance * max(x, y, 1)}
    ta, tb = a["cronofy"]["total"], b["cronofy"]["total"]
    rows["total"] = {"a": ta, "b": tb, "within": abs(ta - tb) <= tolerance * max(ta, tb, 1)}
    return {"rows": rows, "same": all(r["within"] for r in rows.values())}


def sections(results_dir: Path | str = RESULTS) -> dict[str, str]:
    """name -> markdown, for marker comments in docs/capacity.md."""
    runs = load(results_dir)
    return {"capacity-must-hold": must_hold_table(runs), "capacity-by-function": by_function_table(runs),
            "capacity-by-org": org_table(runs)}


def charts(results_dir: Path | str = RESULTS, out_dir: Path | str = ROOT / "docs") -> list[Path]:
    """PNG charts of the largest direct run: requests per minute by function against the limit, the
    latency CDFs, p99 per org. Returns the files written."""
    runs = load(results_dir)
    if not runs:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name, r = runs[0]
    ch = r["charts"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    users = f"{r['period']['users']:,} users"
    written = []

    def save(fig, ax, title: str, file: str) -> None:
        ax.set_title(title)
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        fig.savefig(out / file, dpi=90)
        plt.close(fig)
        written.append(out / file)

    fig, ax = plt.subplots(figsize=(11, 4.5))
    series = ch["requests_per_minute_by_function"]
    hours = [m / 60 for m in range(len(next(iter(series.values()))))]
    ax.stackplot(hours, *series.values(), labels=list(series), linewidth=0)
    ax.axhline(ch["limit_per_minute"], color="red", linestyle="--", label=f"Cronofy limit {ch['limit_per_minute']}/min")
    ax.set_xlabel(f"hours from {ch['start']} (UTC)")
    ax.set_ylabel("Cronofy requests per minute")
    save(fig, ax, f"Cronofy requests per minute by function, direct run, {users} ({name})",
         "capacity-requests-per-minute.png")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    q = ch["cdf_percentiles"]
    for label, key in (("milestone -> calendar write", "milestone_to_calendar_cdf_s"),
                       ("calendar move -> core queue", "move_to_queue_cdf_s")):
        xs = [v for v in ch[key] if v is not None]
        if xs:
            ax.plot(xs, q[:len(xs)], label=label)
    ax.axvline(120, color="red", linestyle="--", label="120 s")
    ax.set_xscale("symlog", linthresh=1.0)  # the body (seconds) and the tail (hours) on one axis
    ax.set_xlim(left=0)
    ax.set_xlabel("seconds (log scale above 1 s)")
    ax.set_ylabel("percentile")
    save(fig, ax, f"Latency CDFs, {users}", "capacity-latency-cdf.png")

    by_org = r["latency_seconds"].get("p99_by_org") or {}
    if by_org:
        # the run's day is the weather day: one org reschedules ~400 installs in 15 minutes; its bar is orange
        weather = (r.get("weather_day") or {}).get("org")
        fig, ax = plt.subplots(figsize=(11, 4))
        orgs = sorted(by_org, key=lambda o: -by_org[o])
        ax.bar(range(len(orgs)), [by_org[o] for o in orgs], width=1.0,
               color=["tab:orange" if o == weather else "tab:blue" for o in orgs])
        ax.axhline(180, color="red", linestyle="--", label="180 s")
        if weather in by_org:
            ax.bar([orgs.index(weather)], [by_org[weather]], width=1.0, color="tab:orange",
                   label=f"{weather}: the weather day's org")
        ax.set_xlabel(f"the {len(orgs)} orgs, slowest first")
        ax.set_ylabel("p99 milestone -> calendar (s)")
        save(fig, ax, f"p99 per org on the weather day, {users}", "capacity-p99-by-org.png")
    return written


def fill(doc: Path, generated: dict[str, str]) -> str:
    """`doc` with each `<!-- BEGIN name ... -->` ... `<!-- END name -->` region replaced by the section."""
    import re

    text = doc.read_text()
    for name, body in generated.items():
        pattern = re.compile(rf"(<!-- BEGIN {re.escape(name)}\b[^>]*-->\n).*?(<!-- END {re.escape(name)} -->)", re.S)
        text = pattern.sub(lambda m, b=body: m.group(1) + b + m.group(2), text)
    return text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--charts", metavar="OUT_DIR", help="also write the PNG charts here")
    ap.add_argument("--same-counts", nargs=2, metavar=("A_JSON", "B_JSON"),
                    help="compare two runs of the same seed: requests by function within 1%%")
    ap.add_argument("--fill", metavar="DOC", help="rewrite the marked regions of this markdown file")
    args = ap.parse_args(argv)
    if args.fill:
        doc = Path(args.fill)
        doc.write_text(fill(doc, sections(args.results)))
    if args.same_counts:
        a, b = (json.loads(Path(f).read_text()) for f in args.same_counts)
        check = same_counts(a, b)
        for f, row in check["rows"].items():
            print(f"  {f:<28}{row['a']:>10,}{row['b']:>10,}  {'ok' if row['within'] else 'DIFFERENT'}")
        print("same request counts (+-1%)" if check["same"] else "NOT the same request counts")
        return
    for name, text in sections(args.results).items():
        print(f"<!-- {name} -->\n{text}")
    if args.charts:
        for path in charts(args.results, args.charts):
            print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
