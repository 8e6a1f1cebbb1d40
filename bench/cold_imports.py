"""Cold import time of each function's handler module, median of N fresh processes, next to
`import boto3` (the floor every function pays). Run: make bench (or python bench/cold_imports.py)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localdev import template  # noqa: E402

PROBE = """
import sys, time
sys.path[:0] = {paths!r}
t = time.perf_counter()
{statement}
print(time.perf_counter() - t)
"""


def measure(statement: str, paths: list[str], runs: int) -> float:
    samples = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", PROBE.format(paths=paths, statement=statement)],
                             capture_output=True, text=True, check=True, env=env, cwd="/")
        samples.append(float(out.stdout.strip()) * 1000)
    return statistics.median(samples)


def main(runs: int = 5) -> dict:
    layer = str(ROOT / "layers" / "core")
    # warm the .pyc files once so every measurement is a cold *process*, not a first compile
    measure("import boto3", [layer], 1)
    boto = measure("import boto3", [layer], runs)
    results = {"import boto3": round(boto, 1)}
    for fid, fn in template.functions(template.load()).items():
        code_dir = str(ROOT / Path(*fn.module.split(".")[:-1]))
        statement = f"import {fn.module.split('.')[-1]}"
        measure(statement, [code_dir, layer], 1)
        results[fid] = round(measure(statement, [code_dir, layer], runs), 1)
    print(f"{'module':<32} {'median ms':>10} {'x boto3':>8}")
    for name, ms in results.items():
        print(f"{name:<32} {ms:>10.1f} {ms / boto:>8.2f}")
    return results


if __name__ == "__main__":
    out = main(int(os.environ.get("RUNS", "5")))
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "cold_imports.json").write_text(json.dumps(out, indent=2) + "\n")
