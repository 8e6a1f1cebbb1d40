"""The stamp every results file carries, and the one way the `make bench` scripts write theirs.

`provenance()` is shared by every benchmark, bench/scale.py included. `write(stem, result,
settings)` writes bench/results/<stem>.json with the result, its `provenance` (commit and whether the
tree had changes, date, command-line arguments, machine and its load) and `settings` (the environment
knobs the script read: RUNS, MEMBERS, ...), so a reader can tell what produced each figure.
bench/docgen.py renders the docs' tables from these files.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def provenance() -> dict:
    """What a reader needs to trust a results file: the commit (and whether the tree had changes), when,
    with which arguments, on what machine (and how loaded it was: wall times are only comparable with it).
    Stamped once per process: the commit the run started from, even if HEAD moves while it runs."""
    import platform
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    if not hasattr(provenance, "_cached"):
        provenance._cached = {  # type: ignore[attr-defined]
            "commit": git("rev-parse", "HEAD") or None,
            # changed code, not the results files earlier runs of the same tree wrote (their outputs)
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results")),
            "date": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "arguments": sys.argv[1:],
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version(),
                        "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        }
    return provenance._cached  # type: ignore[attr-defined]


def stamped(result: dict[str, Any], settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """`result` with `provenance` (and the `settings` the run used) first; the machine's load at the end too."""
    prov = dict(provenance())
    prov["machine"] = dict(prov["machine"], load_average_at_end=[round(x, 2) for x in os.getloadavg()])
    return {"provenance": prov, "settings": dict(settings or {}), **result}


def write(stem: str, result: dict[str, Any], settings: dict[str, Any] | None = None,
          folder: Path = RESULTS) -> Path:
    """bench/results/<stem>.json: the stamped result. Returns the path written."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(stamped(result, settings), indent=2, default=str) + "\n")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", file=sys.stderr, flush=True)
    return path


def read(stem: str, folder: Path = RESULTS) -> dict[str, Any]:
    """A results file without its stamp (what the script returned when it wrote it)."""
    data = json.loads((folder / f"{stem}.json").read_text())
    return {k: v for k, v in data.items() if k not in ("provenance", "settings")}
