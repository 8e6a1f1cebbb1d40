"""Issue 6: a week at a 50-person installer through the local stack (the real handlers, moto, the Cronofy
emulator), side by side with what a naive one-call-per-operation integration would need.

    make bench            (or: PYTHONPATH=layers/core:. .venv/bin/python bench/week.py)

Workload (seeded, bench/workload.py): 50 users in 3 orgs, each connected through the consent page;
3,000 milestones (half already scheduled when the users connect: the connect backfills them, half
published during the week), 600 reschedules in SolarNexus (50 of them sent alone to sample the
end-to-end delay), 150 moves of SolarNexus events on calendars (the core platform applies them and
publishes the new version), 20 reassignments, 5 disconnects, 1 deactivation, 200 scheduler views of
14 days of busy times, and users' own events (opaque, "Show as Free", tentative), some already on the
calendar before connecting. The week is 40 working-hour slots; each slot's milestone messages go to
MilestoneEventsQueue together and the local pump hands them to milestone push 10 at a time.

Prints a table and writes bench/results/week.json. Environment: SEED, SCALE (every count but the
users; 1 = the issue's week, smaller only for trials), BEFORE_SHARE, COLD_RUNS (cold-import processes
per module), SKIP_SUBBENCH=1 (skip bench/milestones.py and bench/webhook_intake.py), BENCH_REUSE=1
(take their figures and the cold imports from bench/results/*.json, as `make bench` does after running them).
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "core")]
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
# The week is compressed into minutes: a real-time 500/minute limiter would stretch the run past an
# hour. The shared limiter (where the core has one) still runs and its DynamoDB traffic is counted.
os.environ.setdefault("RATE_LIMIT_PER_SECOND", "100000")
os.environ.setdefault("RATE_LIMIT_PER_MINUTE", "6000000")

from bench import costmodel, meters, provenance, workload  # noqa: E402
from localdev import template  # noqa: E402
from localdev.builders import connect  # noqa: E402
from localdev.stack import DevStack  # noqa: E402

HTTP_FUNCTIONS = ("CalendarApiFunction", "OAuthCallbackFunction", "WebhookIntakeFunction")
SQS_FUNCTIONS = ("MilestonePushFunction", "NotificationProcessorFunction", "DeactivationCleanupFunction")
BUSY_ROUTE = "GET /v1/orgs/{org_id}/busy"
BROWSER_PATHS = ("/oauth/authorize", "/relink")  # the user's browser on Cronofy's pages, not our API use


def classify(method: str, path: str) -> str:
    if path == "/v1/batch":
        return "batch"
    if path.startswith("/v1/calendars/") and path.endswith("/events"):
        return "single event write"
    if path == "/v1/events":
        return "bulk delete" if method == "DELETE" else "read events"
    if path.startswith("/v1/free_busy"):
        return "free/busy"
    if path.startswith("/oauth/token/revoke"):
        return "revoke"
    if path.startswith("/oauth/token"):
        return "token"
    if path.startswith("/v1/channels"):
        return "channels"
    if path.startswith("/v1/calendars") or path.startswith("/v1/userinfo"):
        return "calendars"  # userinfo: the account's calendars and time zone, read at connect
    if path.startswith(BROWSER_PATHS):
        return "browser"
    return path


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1]


class Run:
    """One week through one DevStack, with its meters and the core platform's model."""

    def __init__(self, stack: DevStack, week: workload.Week):
        self.stack = stack
        self.week = week
        self.rng = random.Random(week.seed + 1)
        self.accounts: dict[str, dict] = {}
        self.calendar: dict[str, str] = {}  # user -> selected calendar id
        self.sessions = {}
        self.users = {u.user_id: u for u in week.users}
        self.connected: set[str] = set()
        self.own_events: dict[str, list[tuple[str, str, bool]]] = defaultdict(list)  # user -> (start, end, busy)
        self.naive = workload.Naive(stack.emulator.state.page_size)
        self.pending_applied: list[str] = []
        self.e2e: list[float] = []
        self.busy_http_ms: list[float] = []
        self.calendar_changes = Counter()
        self.applied = 0
        self.rejected = 0
        self.core_messages = Counter()
        _, table_kwargs = template.table_definition(stack.template)
        self.aws = meters.AwsMeter(meters.Capacity(meters.indexes_from_template(table_kwargs)))
        self.cronofy = meters.CronofyMeter(stack.emulator.base_url)
        self.invocations = meters.InvokeMeter(stack)
        self.phases: list[dict] = []

    # ---- meters and phases --------------------------------------------------------------------------

    def __enter__(self) -> Run:
        self.aws.install()
        self.cronofy.install()
        self.invocations.install()
        self.aws.active = True
        return self

    def __exit__(self, *exc) -> None:
        self.aws.active = False
        self.invocations.uninstall()
        self.cronofy.uninstall()
        self.aws.uninstall()

    def _mark(self) -> dict:
        return {"time": time.time(), "perf": time.perf_counter(), "aws": Counter(self.aws.counts),
                "rru": sum(self.aws.read_units[k] for k in self.aws.read_units if k[0] != "harness"),
                "wru": sum(self.aws.write_units[k] for k in self.aws.write_units if k[0] != "harness"),
                "log": len(self.stack.emulator.request_log), "inv": len(self.invocations.records),
                "naive": dict(self.naive.by_kind), "entries": self.cronofy.batch_entries,
                "cronofy": Counter(self.cronofy.by_owner), "core": Counter(self.core_messages)}

    def phase(self, name: str):
        run = self

        class _Phase:
            def __enter__(self):
                self.start = run._mark()

            def __exit__(self, *exc):
                if exc[0] is None:
                    run.phases.append({"name": name, "start": self.start, "end": run._mark()})

        return _Phase()

    # ---- the people -----------------------------------------------------------------------------------

    def seed_accounts(self) -> None:
        for u in self.week.users:
            self.accounts[u.user_id] = self.stack.emulator.add_calendar_account(u.provider, u.email,
                                                                                calendars=u.calendars)
            self.sessions[u.user_id] = self.stack.browser(u.user_id, u.org_id)

    def add_own_events(self, user_id: str, calendar_id: str, day: int) -> int:
        """A dentist visit (busy), focus time marked "Show as Free" and a tentative meeting."""
        base = (self.week.now + timedelta(days=day)).replace(hour=17)
        specs = [("Dentist", base, 1, "opaque", "confirmed"),
                 ("Focus time", base + timedelta(hours=2), 2, "transparent", "confirmed"),
                 ("Maybe: supplier call", base + timedelta(days=1, hours=-1), 1, "opaque", "tentative")]
        for summary, start, hours, transparency, status in specs:
            s, e = workload._z(start), workload._z(start + timedelta(hours=hours))
            self.stack.emulator.add_external_event(calendar_id, summary, s, e, transparency=transparency,
                                                   status=status)
            self.own_events[user_id].append((s, e, transparency == "opaque"))
        return len(specs)

    def events_on_calendars(self, user_id: str) -> int:
        return sum(len(self.stack.emulator.events(c["calendar_id"])) for c in self.accounts[user_id]["calendars"])

    def connected_assignees(self, m: workload.Milestone) -> set[str]:
        return set(m.assignees) & self.connected

    # ---- phases of the week ------------------------------------------------------------------------------

    def before(self) -> None:
        """The schedule that exists when the installer turns calendar sync on; some users' calendars
        already hold their own appointments."""
        for u in self.week.users:
            if u.own_events == "before":
                primary = self.accounts[u.user_id]["calendars"][0]["calendar_id"]
                self.add_own_events(u.user_id, primary, 2 + len(self.own_events) % 9)
        with meters.owner("core platform"):
            for mid in self.week.before:
                m = self.week.milestones[mid]
                m.version = 1
                self.stack.send("MilestoneEventsQueue", workload.upserted(m))
                self.core_messages["milestone messages"] += 1
        self.stack.drain(timeout=600)

    def connect_all(self) -> None:
        for u in self.week.users:
            self.calendar[u.user_id] = connect(self.stack, self.sessions[u.user_id], u.provider,
                                               self.accounts[u.user_id], u.choose)
            self.connected.add(u.user_id)
            scheduled = sum(1 for m in self.week.milestones.values() if m.version and u.user_id in m.assignees)
            self.naive.add("connect: event writes", scheduled)

    def publish(self, messages: list[dict]) -> None:
        with meters.owner("core platform"):
            for message in messages:
                self.stack.send("MilestoneEventsQueue", message)
                self.core_messages["milestone messages"] += 1

    def new_version(self, m: workload.Milestone, kind: str, before: set[str]) -> dict:
        m.version += 1
        after = self.connected_assignees(m)
        if kind == "reassign":
            self.naive.add("milestone changes: event writes", len(before - after) + len(after - before))
        else:
            self.naive.add("milestone changes: event writes", len(after))
        return workload.upserted(m)

    def reschedule(self, m: workload.Milestone) -> dict:
        shift = self.rng.choice([-2, -1, 1, 2, 3, 5])
        m.start = m.start + timedelta(days=shift)
        if not m.all_day:
            m.start = m.start.replace(hour=self.rng.randint(15, 23))
        return self.new_version(m, "reschedule", self.connected_assignees(m))

    def reassign(self, m: workload.Milestone) -> dict:
        before = self.connected_assignees(m)
        org_users = [u.user_id for u in self.week.users if u.org_id == m.org_id and u.user_id not in m.assignees]
        out = self.rng.randrange(len(m.assignees))
        m.assignees = m.assignees[:out] + [self.rng.choice(org_users)] + m.assignees[out + 1:]
        return self.new_version(m, "reassign", before)

    def slot(self, s: int, slot: workload.Slot) -> None:
        """One hour of the week: the core platform's messages, then the users' own changes, then
        reads and departures."""
        self._publish_slot(slot)
        for mid in slot.solo_reschedules:
            self.solo(self.week.milestones[mid])
        self._users_act(s, slot)
        for org_id in slot.busy_views:
            self.busy_view(org_id)
        self.core_platform_reads()
        for user_id in slot.disconnects:
            self.leave(user_id, deactivate=False)
        for user_id in slot.deactivations:
            self.leave(user_id, deactivate=True)
        if slot.disconnects or slot.deactivations:
            self.stack.drain()

    def _publish_slot(self, slot: workload.Slot) -> None:
        ms = self.week.milestones
        messages = [self.new_version(ms[mid], "new", set()) for mid in slot.new]
        messages += [self.reschedule(ms[mid]) for mid in slot.reschedules]
        messages += [self.reassign(ms[mid]) for mid in slot.reassignments]
        # calendar moves the core platform accepted last hour
        messages += [self.new_version(ms[mid], "applied", set()) for mid in self.pending_applied]
        self.pending_applied = []
        self.rng.shuffle(messages)
        self.publish(messages)
        self.stack.drain()

    def _users_act(self, s: int, slot: workload.Slot) -> None:
        for _ in range(slot.calendar_moves):
            self.calendar_move()
        for user_id in slot.own_events:
            if user_id in self.connected:
                n = self.add_own_events(user_id, self.calendar[user_id], 1 + s % 10)
                for _ in range(n):
                    self.naive.add("notifications: full re-reads", self.naive.full_read(
                        self.events_on_calendars(user_id)))
        self.stack.drain()

    def solo(self, m: workload.Milestone) -> None:
        """One reschedule on its own: time from the send until the calendar shows it."""
        message = self.reschedule(m)
        watchers = sorted(self.connected_assignees(m))
        started = time.perf_counter()
        self.publish([message])
        self.stack.drain()
        if not watchers:
            return
        start, _ = m.times()
        event_id = f"sn-{m.milestone_id}"
        shown = [e for e in self.stack.emulator.events(self.calendar[watchers[0]]) if e["event_id"] == event_id]
        if shown and shown[0]["start"] == start:
            self.e2e.append((time.perf_counter() - started) * 1000)

    def calendar_move(self) -> None:
        """The user drags a SolarNexus event on their own calendar (a timed one) to another day."""
        candidates = sorted(mid for mid, m in self.week.milestones.items()
                            if m.version and not m.all_day and self.connected_assignees(m)
                            and mid not in self.pending_applied)
        m = self.week.milestones[self.rng.choice(candidates)]
        user_id = self.rng.choice(sorted(self.connected_assignees(m)))
        start = m.start + timedelta(days=self.rng.choice([1, 2, 3]))
        s, e = workload._z(start), workload._z(start + timedelta(hours=m.hours))
        self.stack.emulator.move_event(self.calendar[user_id], event_id=f"sn-{m.milestone_id}", start=s, end=e)
        self.naive.add("notifications: full re-reads", self.naive.full_read(self.events_on_calendars(user_id)))

    def core_platform_reads(self) -> None:
        """The core platform consumes CalendarChangesQueue and applies a calendar reschedule only while
        its version still equals based_on_version (ARCHITECTURE §4)."""
        messages = self.stack.queue_messages("CalendarChangesQueue")  # (SQS cost modelled, not this harness)
        self.core_messages["calendar changes"] += len(messages)
        for message in messages:
            self.calendar_changes[message["type"]] += 1
            if message["type"] != "milestone.rescheduled_on_calendar":
                continue
            m = self.week.milestones[message["milestone_id"]]
            if message["based_on_version"] != m.version or m.milestone_id in self.pending_applied:
                self.rejected += 1
                continue
            start = datetime.fromisoformat(message["start"].replace("Z", "+00:00"))
            m.start = start
            self.pending_applied.append(m.milestone_id)
            self.applied += 1

    def busy_view(self, org_id: str) -> None:
        """The scheduler shows every member of the org for the next 14 days."""
        members = [u.user_id for u in self.week.users if u.org_id == org_id]
        viewer = self.sessions[members[0]] if members[0] in self.connected else self.sessions[members[-1]]
        day0 = self.week.now.replace(hour=0)
        params = {"user_ids": ",".join(members), "from": workload._z(day0),
                  "to": workload._z(day0 + timedelta(days=14))}
        started = time.perf_counter()
        resp = viewer.get(self.stack.url(f"/v1/orgs/{org_id}/busy"), params=params)
        self.busy_http_ms.append((time.perf_counter() - started) * 1000)
        assert resp.status_code == 200, resp.text
        self.naive.add("busy views: live free/busy", sum(1 for u in members if u in self.connected))

    def leave(self, user_id: str, deactivate: bool) -> None:
        managed = [e for e in self.stack.emulator.events(self.calendar[user_id]) if e["managed"]]
        self.naive.add("disconnect + deactivation", len(managed) + 2)
        if deactivate:
            with meters.owner("core platform"):
                self.stack.send("UserEventsQueue", workload.user_deactivated(user_id, self.users[user_id].org_id))
        else:
            resp = self.sessions[user_id].delete(self.stack.url("/v1/calendar/connection"))
            assert resp.status_code == 202, resp.text
        self.connected.discard(user_id)

    def finish(self) -> None:
        while self.pending_applied:
            messages = [self.new_version(self.week.milestones[mid], "applied", set()) for mid in self.pending_applied]
            self.pending_applied = []
            self.publish(messages)
            self.stack.drain()
            self.core_platform_reads()

    # ---- checks -----------------------------------------------------------------------------------------

    def check_calendars(self) -> dict:
        """Every connected user's calendar holds exactly their milestones at the newest times; every
        user who left has none."""
        wrong, missing, extra, left_over = 0, 0, 0, 0
        for user_id, cal in self.calendar.items():
            shown = {e["event_id"]: e for e in self.stack.emulator.events(cal) if e["managed"]}
            if user_id not in self.connected:
                left_over += len(shown)
                continue
            expected = {f"sn-{m.milestone_id}": m for m in self.week.milestones.values()
                        if m.version and user_id in m.assignees}
            missing += len(set(expected) - set(shown))
            extra += len(set(shown) - set(expected))
            for event_id, m in expected.items():
                if event_id in shown and shown[event_id]["start"] != m.times()[0]:
                    wrong += 1
        return {"missing": missing, "extra": extra, "wrong_time": wrong, "left_after_disconnect": left_over}

    def check_busy(self) -> dict:
        """Do the busy view's blocks match each user's own busy events (opaque, confirmed or tentative)?"""
        result = {"before_connect": {"users": 0, "shown": 0}, "during_week": {"users": 0, "shown": 0}}
        day0 = self.week.now.replace(hour=0)
        for user_id, events in self.own_events.items():
            if user_id not in self.connected:
                continue
            u = self.users[user_id]
            group = result["before_connect" if u.own_events == "before" else "during_week"]
            params = {"user_ids": user_id, "from": workload._z(day0), "to": workload._z(day0 + timedelta(days=14))}
            with meters.owner("harness"):
                blocks = self.sessions[user_id].get(self.stack.url(f"/v1/orgs/{u.org_id}/busy"),
                                                    params=params).json()["users"][user_id]
            expected = sorted({(s, e) for s, e, busy in events if busy})
            group["users"] += 1
            group["shown"] += int([(b["start"], b["end"]) for b in blocks] == expected)
        return result


# ---- after the run --------------------------------------------------------------------------------------

def transitions(stack: DevStack, since: float, until: float) -> tuple[int, int]:
    """(executions, state transitions) of the executions started in [since, until): every state entered,
    including those inside Map iterations, is one billed transition."""
    import boto3

    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    executions = entered = 0
    for execution in stack.executions():
        started = execution["startDate"].timestamp()
        if not since <= started < until:
            continue
        executions += 1
        kwargs = {"executionArn": execution["executionArn"], "maxResults": 1000}
        while True:
            page = sfn.get_execution_history(**kwargs)
            entered += sum(1 for e in page["events"] if e["type"].endswith("StateEntered"))
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
    return executions, entered


def phase_counts(run: Run, phase: dict, memory_mb: dict[str, int]) -> dict:
    a, b = phase["start"], phase["end"]
    records = run.invocations.records[a["inv"]:b["inv"]]
    aws = b["aws"] - a["aws"]
    log = run.stack.emulator.request_log[a["log"]:b["log"]]
    by_class = Counter(classify(e["method"], e["path"]) for e in log)
    by_class.pop("browser", None)
    cronofy_by_owner = b["cronofy"] - a["cronofy"]
    invocations = Counter(r.function for r in records)
    billed = defaultdict(float)
    for r in records:
        billed[r.function] += (r.seconds + costmodel.LATENCY["cronofy_request_s"] * r.cronofy
                               + costmodel.LATENCY["aws_request_s"] * sum(r.aws.values()))
    ours = {(o, s, op): n for (o, s, op), n in aws.items() if o != "harness"}
    by_operation = Counter()
    for (_, s, op), n in ours.items():
        by_operation[(s, op)] += n
    sqs_sends = sum(n for (o, s, op), n in ours.items() if s == "sqs")
    sqs_esm = 2 * sum(invocations[f] for f in SQS_FUNCTIONS)  # ReceiveMessage + DeleteMessageBatch per batch
    core_reads = b["core"] - a["core"]
    changes_consumed = 2 * math.ceil(core_reads.get("calendar changes", 0) / 10)
    executions, entered = transitions(run.stack, a["time"], b["time"])
    naive = {k: b["naive"].get(k, 0) - a["naive"].get(k, 0) for k in b["naive"]}
    return {
        "seconds": round(b["perf"] - a["perf"], 1),
        "cronofy_requests": sum(by_class.values()),
        "cronofy_by_endpoint": dict(by_class.most_common()),
        "cronofy_by_function": dict(cronofy_by_owner.most_common()),
        "batch_entries": b["entries"] - a["entries"],
        "naive": {k: v for k, v in naive.items() if v},
        "aws_by_operation": {f"{s}.{op}": n for (s, op), n in sorted(by_operation.items())},
        "aws_by_function_operation": {f"{o} {s}.{op}": n for (o, s, op), n in sorted(ours.items())},
        "dynamodb_by_function": {f: sum(n for (o, s, op), n in ours.items() if o == f and s == "dynamodb")
                                 for f in sorted({o for o, _, _ in ours})},
        "rru": round(b["rru"] - a["rru"], 1),
        "wru": round(b["wru"] - a["wru"], 1),
        "invocations": dict(invocations),
        "billed_seconds": {f: round(v, 3) for f, v in billed.items()},
        "sqs_requests": sqs_sends + sqs_esm + changes_consumed,
        "kms_requests": sum(n for (o, s, op), n in ours.items() if s == "kms"),
        "secrets_requests": sum(n for (o, s, op), n in ours.items() if s == "secretsmanager"),
        "api_requests": sum(invocations[f] for f in HTTP_FUNCTIONS),
        "sfn_executions": executions,
        "sfn_transitions": entered,
    }


RSS_PROBE = """
import resource, sys
sys.path[:0] = {paths!r}
import {module}
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def import_rss() -> dict[str, float]:
    """Resident memory (MB) of a fresh interpreter after importing each handler module: the floor each
    Lambda container carries before its first event."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    layer = str(ROOT / "layers" / "core")
    out = {}
    for fid, fn in template.functions(template.load()).items():
        code_dir = str(ROOT / Path(*fn.module.split(".")[:-1]))
        probe = RSS_PROBE.format(paths=[code_dir, layer], module=fn.module.split(".")[-1])
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env,
                              cwd="/")
        out[fid] = round(int(done.stdout.strip()) / 1024, 1)
    return out


def paired_import_ratio(function_id: str, pairs: int = 11) -> dict:
    """Cold import of one handler over `import boto3`, measured in alternating fresh processes so both
    see the same machine load (the ratio of two medians taken a minute apart swings by +-0.3 here)."""
    from bench import cold_imports

    fn = template.functions(template.load())[function_id]
    layer = str(ROOT / "layers" / "core")
    code_dir = str(ROOT / Path(*fn.module.split(".")[:-1]))
    ratios = []
    for _ in range(pairs):
        boto = cold_imports.measure("import boto3", [layer], 1)
        handler = cold_imports.measure(f"import {fn.module.split('.')[-1]}", [code_dir, layer], 1)
        ratios.append(handler / boto)
    return {"pairs": pairs, "median_ratio": round(statistics.median(ratios), 2),
            "min": round(min(ratios), 2), "max": round(max(ratios), 2)}


def memory_sizes(tpl: dict) -> dict[str, int]:
    default = tpl["Globals"]["Function"].get("MemorySize", 128)
    return {fid: tpl["Resources"][fid]["Properties"].get("MemorySize", default) for fid in template.functions(tpl)}


def run_week(week: workload.Week) -> tuple[Run, dict]:
    meters.fast_moto_queries()
    tpl = template.load()
    mem = memory_sizes(tpl)
    with DevStack() as stack, Run(stack, week) as run:
        run.seed_accounts()
        started = time.perf_counter()
        print(f"  the schedule before connecting ({len(week.before):,} milestones) ...", file=sys.stderr, flush=True)
        with run.phase("before"):
            run.before()
        print(f"  connecting {len(week.users)} users (consent page, backfill) ...", file=sys.stderr, flush=True)
        with run.phase("connect"):
            run.connect_all()
        with run.phase("week"):
            for s, slot in enumerate(week.slots):
                run.slot(s, slot)
                if (s + 1) % 5 == 0 or s + 1 == len(week.slots):
                    print(f"  the week: hour {s + 1} of {len(week.slots)} done, "
                          f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
            run.finish()
        workload_seconds = time.perf_counter() - started
        run.aws.active = False
        checks = {"calendars": run.check_calendars(), "busy": run.check_busy()}
        phases = {p["name"]: phase_counts(run, p, mem) for p in run.phases}
        stats = stack.emulator.stats
        invocations = dict(stack.invocations)
    week_phase = next(p for p in run.phases if p["name"] == "week")
    in_week = run.invocations.records[week_phase["start"]["inv"]:week_phase["end"]["inv"]]
    busy = [r for r in in_week if r.route == BUSY_ROUTE]
    busy_plain = [r.seconds * 1000 for r in busy if r.peak_bytes is None] or [r.seconds * 1000 for r in busy]
    intake = [r.seconds * 1000 for r in in_week if r.function == "WebhookIntakeFunction" and r.peak_bytes is None]
    peaks: dict[str, dict] = {}
    for fid, records in sorted(run.invocations.by_function().items()):
        # The first invocation builds the AWS clients (botocore loads its service models): reported apart.
        first, warm = records[0], records[1:]
        traced = [r.peak_bytes for r in warm if r.peak_bytes is not None and not r.overlapped]
        overlapped = [r.peak_bytes for r in warm if r.peak_bytes is not None and r.overlapped]
        peaks[fid] = {"invocations": len(records), "traced": len(traced),
                      "peak_mb": round(max(traced) / 2**20, 1) if traced else None,
                      "first_invocation_peak_mb": round(first.peak_bytes / 2**20, 1) if first.peak_bytes else None,
                      "peak_mb_with_concurrent_work": round(max(overlapped) / 2**20, 1) if overlapped else None,
                      "median_ms": round(statistics.median(r.seconds for r in records) * 1000, 1)}
    result = {
        "workload_seconds": round(workload_seconds, 1),
        "phases": phases,
        "checks": checks,
        "emulator_stats": stats,
        "invocations": invocations,
        "memory_mb_configured": mem,
        "functions": peaks,
        "busy_route": {
            "calls": len(busy),
            "handler_p50_ms": round(pct(busy_plain, 50), 2), "handler_p99_ms": round(pct(busy_plain, 99), 2),
            "http_p50_ms": round(pct(run.busy_http_ms, 50), 2), "http_p99_ms": round(pct(run.busy_http_ms, 99), 2),
            "dynamodb_requests_per_call": dict(Counter(sum(n for (s, _), n in r.aws.items() if s == "dynamodb")
                                                       for r in busy)),
            "cronofy_requests": sum(r.cronofy for r in busy),
        },
        "intake_in_week": {"calls": len(intake), "p50_ms": round(pct(intake, 50), 2),
                           "p99_ms": round(pct(intake, 99), 2)},
        "e2e_ms": {"samples": len(run.e2e), "p50": round(pct(run.e2e, 50), 1), "p99": round(pct(run.e2e, 99), 1)},
        "core_platform": {"calendar_changes": dict(run.calendar_changes), "applied": run.applied,
                          "rejected": run.rejected},
        "process_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    return run, result


# ---- summary ------------------------------------------------------------------------------------------

WEEK_CATEGORIES = (  # (label, our function, naive kind)
    ("milestone changes", "MilestonePushFunction", "milestone changes: event writes"),
    ("calendar notifications", "NotificationProcessorFunction", "notifications: full re-reads"),
    ("scheduler busy views", "CalendarApiFunction", "busy views: live free/busy"),
    ("disconnect + deactivation", "DeactivationCleanupFunction", "disconnect + deactivation"),
)


def summarize(week: workload.Week, result: dict) -> dict:
    phases = result["phases"]
    connect, during = phases["connect"], phases["week"]
    writes_in_connect = connect["cronofy_by_endpoint"].get("batch", 0) + connect["cronofy_by_endpoint"].get(
        "single event write", 0)
    handshake = connect["cronofy_requests"] - writes_in_connect
    rows = [{"what": f"connect {len(week.users)} users + backfill", "ours": connect["cronofy_requests"],
             "naive": handshake + connect["naive"].get("connect: event writes", 0)}]
    for label, fid, kind in WEEK_CATEGORIES:
        rows.append({"what": label, "ours": during["cronofy_by_function"].get(fid, 0),
                     "naive": during["naive"].get(kind, 0)})
    other = during["cronofy_requests"] - sum(r["ours"] for r in rows[1:])
    if other:
        rows.append({"what": "other (week)", "ours": other, "naive": other})
    ours_total = sum(p["cronofy_requests"] for p in phases.values())
    naive_total = sum(r["naive"] for r in rows)
    rows.append({"what": "all", "ours": ours_total, "naive": naive_total})
    for r in rows:
        r["ratio"] = round(r["ours"] / r["naive"], 3) if r["naive"] else None

    slots = week.slots
    milestone_messages = (len(week.milestones) + sum(len(s.reschedules) + len(s.solo_reschedules)
                                                     + len(s.reassignments) for s in slots)
                          + result["core_platform"]["applied"])
    calendar_side = sum(s.calendar_moves for s in slots) + 3 * sum(
        1 for u in week.users if u.own_events == "during")
    leaves = sum(len(s.disconnects) + len(s.deactivations) for s in slots)
    changes = milestone_messages + calendar_side + leaves
    endpoints = Counter()
    entries = 0
    for p in phases.values():
        endpoints.update(p["cronofy_by_endpoint"])
        entries += p["batch_entries"]
    batch, single = endpoints.get("batch", 0), endpoints.get("single event write", 0)
    week_days = 5
    return {
        "cronofy_rows": rows,
        "synced_changes": {"milestone_messages": milestone_messages, "calendar_side_changes": calendar_side,
                           "disconnects_and_deactivations": leaves, "total": changes},
        "cronofy_per_synced_change": round(ours_total / changes, 3),
        "naive_per_synced_change": round(naive_total / changes, 3),
        "ratio_to_naive": round(ours_total / naive_total, 3),
        "writes": {"batch_requests": batch, "single_event_requests": single,
                   "bulk_deletes": endpoints.get("bulk delete", 0),
                   "share_of_write_requests_batched": round(batch / (batch + single), 3) if batch + single else None,
                   "event_writes_in_batches": entries,
                   "event_writes_per_batch": round(entries / batch, 2) if batch else None},
        "cronofy_by_endpoint": dict(endpoints.most_common()),
        "event_writes_per_batch_by_phase": {
            name: round(p["batch_entries"] / p["cronofy_by_endpoint"]["batch"], 2)
            for name, p in phases.items() if p["cronofy_by_endpoint"].get("batch")},
        "week_requests_per_user_working_day": round(during["cronofy_requests"] / (len(week.users) * week_days), 2),
        "week_requests_per_change": round(during["cronofy_requests"] / max(1, changes - len(week.before)), 3),
    }


def table(week: workload.Week, result: dict, summary: dict, cold: dict, backfill: dict | None,
          intake: dict | None, rss: dict, paired: dict, cost: dict, onboarding: dict, ceiling: dict,
          wall: float) -> str:
    out = []
    w = out.append
    slots = week.slots
    w(f"A week at a {len(week.users)}-person installer (seed {week.seed}), local stack: moto + Cronofy emulator "
      "+ the real handlers")
    w(f"  {len(week.users)} users in {len({u.org_id for u in week.users})} orgs; {len(week.milestones):,} milestones "
      f"({len(week.before):,} scheduled before connecting, backfilled; the rest published in 40 working-hour "
      f"slots); {sum(len(s.reschedules) + len(s.solo_reschedules) for s in slots)} SolarNexus reschedules "
      f"({sum(len(s.solo_reschedules) for s in slots)} sent alone); {sum(s.calendar_moves for s in slots)} "
      f"calendar moves ({result['core_platform']['applied']} applied by the core platform and re-published); "
      f"{sum(len(s.reassignments) for s in slots)} reassignments; {sum(len(s.disconnects) for s in slots)} "
      f"disconnects; {sum(len(s.deactivations) for s in slots)} deactivation; "
      f"{sum(len(s.busy_views) for s in slots)} busy views (each: every member of one org, 14 days)")
    w("")
    w(f"{'Cronofy requests':<36}{'ours':>9}{'naive':>9}{'ours/naive':>12}")
    for r in summary["cronofy_rows"]:
        ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else "-"
        w(f"  {r['what']:<34}{r['ours']:>9,}{r['naive']:>9,}{ratio:>12}")
    sc = summary["synced_changes"]
    w(f"  per synced change ({sc['total']:,} changes)  {summary['cronofy_per_synced_change']:>9.3f}"
      f"{summary['naive_per_synced_change']:>9.3f}")
    wr = summary["writes"]
    w(f"  writes: {wr['batch_requests']:,} x /v1/batch carrying {wr['event_writes_in_batches']:,} event writes "
      f"({wr['event_writes_per_batch']} per batch; by phase {summary['event_writes_per_batch_by_phase']}), "
      f"{wr['single_event_requests']} single-event requests, "
      f"{wr['bulk_deletes']} bulk deletes -> {100 * (wr['share_of_write_requests_batched'] or 0):.0f}% of write "
      "requests batched")
    w("  naive = 1 request per event write; per disconnect 1 per event + channel + revoke; per busy view 1 "
      "free/busy per connected user; per notification ceil(events on the calendars / page size) pages of a "
      "full re-read; the same OAuth/calendars/channel handshake at connect")
    w(f"  by endpoint: {summary['cronofy_by_endpoint']}")
    w("")
    for name in ("connect", "week"):
        p = result["phases"][name]
        w(f"{'AWS requests, ' + name + ' phase':<36}{p['seconds']:>8.1f} s wall")
        w("  " + ", ".join(f"{k} {v:,}" for k, v in p["aws_by_operation"].items()))
        w(f"  DynamoDB request units (estimated from item sizes): {p['rru']:,.0f} RRU, {p['wru']:,.0f} WRU; "
          f"Step Functions: {p['sfn_executions']} executions, {p['sfn_transitions']:,} state transitions")
        w("  DynamoDB requests by function: " + ", ".join(f"{k} {v:,}" for k, v in p["dynamodb_by_function"].items()
                                                         if v))
    w("")
    w(f"{'function':<31}{'invocations':>12}{'median ms':>10}{'peak MB':>9}{'1st MB':>8}{'RSS MB':>8}"
      f"{'cold ms':>9}{'x boto3':>9}{'paired':>8}")
    boto = cold.get("import boto3")
    for fid, f in result["functions"].items():
        peak = f"{f['peak_mb']:.1f}" if f["peak_mb"] is not None else (
            f"({f['peak_mb_with_concurrent_work']:.1f})" if f["peak_mb_with_concurrent_work"] else "-")
        c = cold.get(fid)
        first = f"{f['first_invocation_peak_mb']:.1f}" if f["first_invocation_peak_mb"] else "-"
        w(f"  {fid:<29}{f['invocations']:>12,}{f['median_ms']:>10.1f}{peak:>9}{first:>8}{rss.get(fid, 0):>8.0f}"
          f"{c if c is not None else float('nan'):>9.1f}{(c / boto) if c and boto else float('nan'):>9.2f}"
          f"{paired[fid]['median_ratio'] if fid in paired else float('nan'):>8.2f}")
    w("  DeactivationCleanup and OAuthCallback time and memory here are mostly moto's: its TransactWriteItems "
      "deep-copies the whole table once per transaction item (its rollback snapshot)")
    w(f"  import boto3: {boto} ms (median of fresh processes). peak MB = highest tracemalloc peak of one warm "
      "invocation (sampled; includes the in-process moto and emulator work it causes; in brackets: only measured "
      "while another function ran too); 1st MB = its first invocation (builds AWS clients when it is the first "
      "to need them: they are shared in this process); RSS = fresh process after importing the handler; paired = "
      "median of handler/boto3 ratios over alternating fresh processes (robust to the machine's load swings)")
    w("")
    br = result["busy_route"]
    w(f"busy route: {br['calls']} calls, handler p50 {br['handler_p50_ms']:.1f} ms / p99 {br['handler_p99_ms']:.1f} ms"
      f" (HTTP through the router p50 {br['http_p50_ms']:.1f} / p99 {br['http_p99_ms']:.1f}); DynamoDB requests per "
      f"call {br['dynamodb_requests_per_call']}; Cronofy requests {br['cronofy_requests']}")
    if intake:
        w(f"webhook intake (bench/webhook_intake.py, {intake['notifications']} warm): p50 "
          f"{intake['change']['p50_ms']:.2f} ms, p99 {intake['change']['p99_ms']:.2f} ms")
    iw = result["intake_in_week"]
    w(f"webhook intake during the week ({iw['calls']} notifications, untraced): p50 {iw['p50_ms']:.2f} ms, "
      f"p99 {iw['p99_ms']:.2f} ms")
    e = result["e2e_ms"]
    w(f"end to end, milestone message -> event on the calendar ({e['samples']} samples): p50 {e['p50']:.0f} ms, "
      f"p99 {e['p99']:.0f} ms (local pump; in AWS add up to the 2 s batching window)")
    if backfill:
        w(f"backfill of {backfill['milestones']:,} milestones (bench/milestones.py): "
          f"{backfill['backfill_cronofy_requests']:.0f} Cronofy requests, {backfill['backfill_seconds']:.1f} s")
    ck = result["checks"]
    w(f"checks: calendars {ck['calendars']}; busy blocks shown correctly for users whose own events were there "
      f"before connecting {ck['busy']['before_connect']['shown']}/{ck['busy']['before_connect']['users']}, "
      f"added during the week {ck['busy']['during_week']['shown']}/{ck['busy']['during_week']['users']}")
    w(f"peak Cronofy traffic in the compressed run: {result['emulator_stats']['max_per_minute']}/min, "
      f"{result['emulator_stats']['max_per_second']}/s")
    w("")
    w(f"cost per 1,000 connected users per month ({costmodel.PRICES_AS_OF}; steady state = the week scaled by "
      f"{cost['scale']:.1f}):")
    for name, line in cost["per_1000_users_month"].items():
        w(f"  {name:<34}{line['quantity']:>16,.0f}   ${line['usd']:>8.2f}")
    w(f"  {'total':<34}{'':>16}   ${cost['usd_per_1000_users_month']:>8.2f}   "
      f"(+ fixed per stack: {cost['fixed_usd_month']})")
    w("  onboarding 1,000 users once (connect + backfill of their schedule): "
      f"${onboarding['usd_per_1000_users_month']:.2f}")
    w(f"Cronofy ceiling (500/min per application): {ceiling['changes_per_minute']:,} synced changes/min at "
      f"{summary['week_requests_per_change']} requests per change; ~{ceiling['users_at_peak']:,} users at "
      f"{summary['week_requests_per_user_working_day']} requests per user-working-day (8 busy hours, peak 3x average)")
    w("")
    w("targets:")
    for t in result["targets"]:
        w(f"  [{'ok' if t['holds'] else 'NO'}] {t['target']}: {t['measured']}")
    w(f"wall time: workload {result['workload_seconds']:.0f} s, whole bench/week.py {wall:.0f} s")
    return "\n".join(out)


def targets(result: dict, summary: dict, cold: dict, backfill: dict | None, paired: dict) -> list[dict]:
    during = result["phases"]["week"]
    leaves = summary["synced_changes"]["disconnects_and_deactivations"]
    cleanup = during["cronofy_by_endpoint"]
    boto = cold.get("import boto3") or float("nan")
    ratios = {f: ms / boto for f, ms in cold.items() if f != "import boto3"}
    intake_ratio = paired["WebhookIntakeFunction"]
    highest = max(paired, key=lambda f: paired[f]["median_ratio"])
    out = [
        {"target": "Cronofy requests <= 1/10 of naive (whole run)", "holds": summary["ratio_to_naive"] <= 0.1,
         "measured": f"{summary['ratio_to_naive']:.3f}; by part: " + ", ".join(
             f"{r['what']} {r['ratio']}" for r in summary["cronofy_rows"][:-1])},
        {"target": "disconnect/deactivation: 1 bulk request whatever the number of events",
         "holds": cleanup.get("bulk delete", 0) == leaves,
         "measured": f"{cleanup.get('bulk delete', 0)} bulk deletes for {leaves} users (naive: "
                     f"{during['naive'].get('disconnect + deactivation', 0) - 2 * leaves} event deletes)"},
        {"target": "busy route: 0 Cronofy requests", "holds": result["busy_route"]["cronofy_requests"] == 0,
         "measured": f"{result['busy_route']['cronofy_requests']} in {result['busy_route']['calls']} calls"},
        {"target": "webhook intake cold import <= 1.5x import boto3",
         "holds": intake_ratio["median_ratio"] <= 1.5,
         "measured": f"{intake_ratio['median_ratio']:.2f}x, median of {intake_ratio['pairs']} alternating pairs "
                     f"(range {intake_ratio['min']}-{intake_ratio['max']}); ratio of the medians above: "
                     f"{ratios.get('WebhookIntakeFunction', float('nan')):.2f}x"},
        {"target": "no function's cold import above 2.5x import boto3",
         "holds": paired[highest]["median_ratio"] <= 2.5,
         "measured": f"highest {highest} {paired[highest]['median_ratio']:.2f}x (alternating pairs; range "
                     f"{paired[highest]['min']}-{paired[highest]['max']}); ratio of the medians above: highest "
                     f"{max(ratios, key=ratios.get)} {max(ratios.values()):.2f}x"},
    ]
    if backfill:
        out.insert(3, {"target": "backfill of 1,000 milestones <= 25 Cronofy requests",
                       "holds": backfill["backfill_cronofy_requests"] <= 25,
                       "measured": f"{backfill['backfill_cronofy_requests']:.0f}"})
    return out


def main() -> dict:
    provenance.provenance()  # stamped at the start: the commit the run started from, and the load then
    t0 = time.perf_counter()
    from bench import cold_imports

    results = ROOT / "bench" / "results"
    reuse = os.environ.get("BENCH_REUSE") == "1"  # make bench ran the three other scripts just before
    reused = {}
    if reuse and (results / "cold_imports.json").exists():
        cold = provenance.read("cold_imports")
        reused["cold_imports"] = json.loads((results / "cold_imports.json").read_text()).get("provenance")
    else:
        print("cold imports (fresh processes) ...", flush=True)
        cold = cold_imports.main(int(os.environ.get("COLD_RUNS", "5")))
    print("resident memory after each handler's import, and alternating handler/boto3 import pairs ...",
          flush=True)
    rss = import_rss()
    paired = {fid: paired_import_ratio(fid, int(os.environ.get("PAIRS", "9")))
              for fid in template.functions(template.load())}
    scale = float(os.environ.get("SCALE", "1"))  # < 1 only for quick trials: the figures are quoted at 1
    week = workload.build(seed=int(os.environ.get("SEED", "6")), milestones=round(3000 * scale),
                          before_share=float(os.environ.get("BEFORE_SHARE", "0.5")),
                          reschedules=round(600 * scale), calendar_moves=round(150 * scale),
                          reassignments=round(20 * scale), busy_views=round(200 * scale),
                          solo_samples=round(50 * scale))
    print("the week ...", flush=True)
    run, result = run_week(week)
    summary = summarize(week, result)
    backfill = intake = None
    if reuse and (results / "milestones.json").exists() and (results / "webhook_intake.json").exists():
        backfill, intake = provenance.read("milestones"), provenance.read("webhook_intake")
        for stem in ("milestones", "webhook_intake"):
            reused[stem] = json.loads((results / f"{stem}.json").read_text()).get("provenance")
    elif not os.environ.get("SKIP_SUBBENCH"):
        from bench import milestones as milestones_bench
        from bench import webhook_intake

        print("bench/milestones.py (1 run) and bench/webhook_intake.py ...", flush=True)
        os.environ.setdefault("RUNS", "1")
        backfill = milestones_bench.main()
        intake = webhook_intake.main()
    mem = result["memory_mb_configured"]
    polled = sum(len(fn.queues) for fn in template.functions(template.load()).values())
    cost = costmodel.monthly(result["phases"]["week"], len(week.users), 7, mem, polled)
    onboarding = costmodel.monthly(result["phases"]["connect"], len(week.users), costmodel.DAYS_PER_MONTH, mem, 0)
    ceiling = costmodel.cronofy_ceiling(summary["week_requests_per_change"],
                                        summary["week_requests_per_user_working_day"])
    result["targets"] = targets(result, summary, cold, backfill, paired)
    wall = time.perf_counter() - t0
    report = table(week, result, summary, cold, backfill, intake, rss, paired, cost, onboarding, ceiling, wall)
    print()
    print(report)
    out = {"seed": week.seed, "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "wall_seconds": round(wall, 1), "summary": summary, "result": result, "cold_imports_ms": cold,
           "import_rss_mb": rss, "paired_import_ratios": paired, "backfill_bench": backfill,
           "webhook_intake_bench": intake,
           "cost": {"prices": costmodel.PRICES, "prices_as_of": costmodel.PRICES_AS_OF,
                    "latency_assumptions": costmodel.LATENCY, "steady_state": cost, "onboarding_1000_users": onboarding,
                    "cronofy_ceiling": ceiling}}
    out["reused_results"] = reused  # BENCH_REUSE=1: the files whose figures the week took, by their stamps
    settings = {k: os.environ[k] for k in ("SEED", "SCALE", "BEFORE_SHARE", "COLD_RUNS", "PAIRS", "SKIP_SUBBENCH",
                                           "BENCH_REUSE") if k in os.environ}
    provenance.write("week", out, settings)
    return out


if __name__ == "__main__":
    main()
