"""Cold import time of each function's handler module, median of N fresh processes, next to
`import boto3` (the floor every function pays). Run: make bench (or python bench/cold_imports.py).

With XRAY_SDK_PATH=<a directory holding aws-xray-sdk> (`pip install --target DIR aws-xray-sdk`; it is
not a dependency of the service) it also reports what Powertools' Tracer would add to each function's
cold start: in the same fresh process, after the handler module is imported, `Tracer()` as Lambda
runs it (tracing enabled, botocore and requests patched), median of N runs
(bench/results/tracer_imports.json). docs/operations.md says what was chosen from it."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "core")]

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


TRACER_PROBE = """
import os, sys, time
sys.path[:0] = {paths!r}
sys.path.append({xray!r})  # after the layer: the layer's botocore, not one the SDK brought along
os.environ["LAMBDA_TASK_ROOT"] = "/var/task"  # as in Lambda: the Tracer is enabled
os.environ["AWS_XRAY_CONTEXT_MISSING"] = "IGNORE_ERROR"
{statement}
t = time.perf_counter()
from aws_lambda_powertools import Tracer
tracer = Tracer(service="calendar-sync")
assert not tracer.disabled
print(time.perf_counter() - t)
"""


def tracer_cost(xray_path: str, runs: int = 5) -> dict:
    """Milliseconds `Tracer()` adds after each handler module is imported (median of `runs` fresh processes)."""
    layer = str(ROOT / "layers" / "core")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    results = {}
    for fid, fn in template.functions(template.load()).items():
        code_dir = str(ROOT / Path(*fn.module.split(".")[:-1]))
        code = TRACER_PROBE.format(paths=[code_dir, layer], xray=xray_path,
                                   statement=f"import {fn.module.split('.')[-1]}")
        samples = []
        for i in range(runs + 1):  # the first run compiles the .pyc files: not counted
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                                 cwd="/")
            if i:
                samples.append(float(out.stdout.strip().splitlines()[-1]) * 1000)
        results[fid] = round(statistics.median(samples), 1)
    print(f"{'Tracer() added after the handler':<32} {'median ms':>10}")
    for name, ms in results.items():
        print(f"{name:<32} {ms:>10.1f}")
    return results


def main(runs: int = 5) -> dict:
    layer = str(ROOT / "layers" / "core")
    # warm the .pyc files once so every measurement is a cold *process*, not a first compile
    measure("import boto3", [layer], 1)
    boto = measure("import boto3", [layer], runs)
    results = {"import boto3": round(boto, 1)}
    for fid, fn in template.functions(template.load()).items():
        print(f"  {fid} ...", file=sys.stderr, flush=True)
        code_dir = str(ROOT / Path(*fn.module.split(".")[:-1]))
        statement = f"import {fn.module.split('.')[-1]}"
        measure(statement, [code_dir, layer], 1)
        results[fid] = round(measure(statement, [code_dir, layer], runs), 1)
    print(f"{'module':<32} {'median ms':>10} {'x boto3':>8}")
    for name, ms in results.items():
        print(f"{name:<32} {ms:>10.1f} {ms / boto:>8.2f}")
    return results


if __name__ == "__main__":
    from bench import provenance

    provenance.provenance()  # stamped at the start: the commit the run started from, and the load then
    runs = int(os.environ.get("RUNS", "5"))
    out = main(runs)
    provenance.write("cold_imports", out, {"RUNS": runs})
    if os.environ.get("XRAY_SDK_PATH"):
        added = tracer_cost(os.environ["XRAY_SDK_PATH"], runs)
        provenance.write("tracer_imports", added, {"RUNS": runs, "XRAY_SDK_PATH": os.environ["XRAY_SDK_PATH"]})
