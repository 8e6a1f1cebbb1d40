"""Issue 13's crew-availability figures: POST /v1/orgs/{org}/availability for 10 users x 14 days, answered
from DynamoDB alone. Prints the handler's time p50/p99 (in-process, warm: the handler invoked directly,
no HTTP hop), also without the time inside DynamoDB calls (moto), DynamoDB requests per call and
Cronofy requests (0).

The crew: 10 installers in Los Angeles and Denver, connected, each with ~2 own appointments per working
day (busy periods over the whole 60-day window) and one SolarNexus assignment per working day (often
shared by two of them, as crews are), asked half the time for "all 10" and half for "any 3"."""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "core")]
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")

import botocore.client  # noqa: E402

from bench import provenance  # noqa: E402
from calsync.models import Connection, ConnectionState, utcnow  # noqa: E402
from localdev.stack import DevStack  # noqa: E402

ORG = "org_bench"
ZONES = ["America/Los_Angeles", "America/Denver"]
EVENT = json.loads((ROOT / "events" / "api-org-availability.json").read_text())


class OwnEvents:
    """Seeds busy periods through the real Busy.rebuild with a stand-in Cronofy client."""

    def __init__(self, events):
        self.events = events

    def read_events(self, **_):
        return iter(self.events)


def z(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seed(stack, users: list[str], monday, rng: random.Random) -> int:
    from calsync import wiring
    from calsync.milestones import Milestone
    from calsync.sync import schedule_key

    store, busy = wiring.store(), wiring.busy()
    now = utcnow()
    for n, user_id in enumerate(users):
        zone = ZoneInfo(ZONES[n % 2])
        conn = Connection(user_id=user_id, org_id=ORG, state=ConnectionState.CONNECTED, provider="google",
                          cronofy_sub=f"acc_{user_id}", calendar_id=f"cal_{user_id}", calendar_name="Work",
                          connected_at=now, updated_at=now, timezone=zone.key, timezone_checked_at=now)
        store.create_connection(conn, b"not-a-real-ciphertext", set())
        blocks = []
        for day in range(-1, 60):
            date = monday + timedelta(days=day)
            if date.isoweekday() > 5:
                continue
            for _ in range(2):
                start = datetime.combine(date, dt_time(rng.randint(7, 16), rng.choice([0, 30])), zone)
                blocks.append({"event_uid": f"evt_{user_id}_{len(blocks)}", "start": z(start),
                               "end": z(start + timedelta(minutes=rng.choice([30, 60, 90]))),
                               "transparency": "opaque", "status": "confirmed"})
        busy.rebuild(conn, OwnEvents(blocks), now)
    milestones = 0
    for day in range(-7, 14):
        date = monday + timedelta(days=day)
        if date.isoweekday() > 5:
            continue
        for n in range(0, len(users), 2):
            crew = [users[n], users[(n + 1) % len(users)]] if rng.random() < 0.5 else [users[n]]
            zone = ZoneInfo(ZONES[n % 2])
            start = datetime.combine(date, dt_time(rng.choice([8, 9, 13])), zone)
            body = {"milestone_id": f"ms_{day}_{n}", "version": 1, "name": "Panel Install",
                    "assignee_user_ids": crew, "start": z(start), "end": z(start + timedelta(hours=rng.choice([2, 4]))),
                    "all_day": False, "timezone": zone.key, "status": "scheduled"}
            m = Milestone.model_validate(body)
            store.put_mirror_if_newer(ORG, m.milestone_id, 1, json.dumps(body))
            store.set_schedule_index(m.milestone_id, {u: schedule_key(m) for u in crew}, [])
            milestones += 1
    return milestones


def main(users_n: int = 10, days: int = 14, calls: int = 200) -> dict:
    provenance.provenance()  # stamped at the start: the commit the run started from, and the load then
    rng = random.Random(13)
    with DevStack() as stack:
        today = datetime.now(UTC).date()
        monday = today + timedelta(days=7 + (7 - today.weekday()) % 7)
        users = [f"u_{i}" for i in range(users_n)]
        print(f"  seeding {users_n} users' busy periods and assignments, then {calls} calls ...", file=sys.stderr,
              flush=True)
        milestones = seed(stack, users, monday, rng)
        start = datetime.combine(monday, dt_time(0), ZoneInfo(ZONES[0]))
        counts: Counter = Counter()
        op_ms: Counter = Counter()
        aws_ms = [0.0]
        original = botocore.client.BaseClient._make_api_call

        def counting(client, operation, kwargs):
            counts[(client.meta.service_model.service_name, operation)] += 1
            started = time.perf_counter()
            try:
                return original(client, operation, kwargs)
            finally:
                spent = (time.perf_counter() - started) * 1000
                aws_ms[0] += spent
                op_ms[operation] += spent

        stack.emulator.clear_request_log()
        times, own_times, slots_found = [], [], []
        botocore.client.BaseClient._make_api_call = counting
        try:
            for i in range(calls):
                if i and i % 50 == 0:
                    print(f"  {i} of {calls} calls", file=sys.stderr, flush=True)
                body = {"user_ids": users, "required": "all" if i % 2 else 3, "duration_minutes": 120,
                        "from": z(start), "to": z(start + timedelta(days=days)), "buffer_minutes": 30,
                        "slot_interval_minutes": 30, "max_results": 10, "timezone": ZONES[0]}
                event = json.loads(json.dumps(EVENT))
                event["rawPath"] = event["requestContext"]["http"]["path"] = f"/v1/orgs/{ORG}/availability"
                event["pathParameters"] = {"org_id": ORG}
                event["requestContext"]["authorizer"]["jwt"]["claims"].update(sub="u_0", org_id=ORG)
                event["requestContext"]["requestId"] = str(uuid.uuid4())
                event["body"] = json.dumps(body)
                aws_ms[0] = 0.0
                started = time.perf_counter()
                result = stack.invoke("CalendarApiFunction", event)
                times.append((time.perf_counter() - started) * 1000)
                own_times.append(times[-1] - aws_ms[0])
                assert result["statusCode"] == 200, result
                slots_found.append(len(json.loads(result["body"])["slots"]))
        finally:
            botocore.client.BaseClient._make_api_call = original
        times.sort()
        own_times.sort()
        dynamodb = {op: v / calls for (svc, op), v in counts.items() if svc == "dynamodb"}
        result = {
            "users": users_n, "days": days, "calls": calls, "milestones_in_window": milestones,
            "slots_per_answer": {"min": min(slots_found), "max": max(slots_found)},
            "dynamodb_requests_per_call": sum(dynamodb.values()),
            "dynamodb_operations": dynamodb,
            "dynamodb_ms_per_request": {op: round(op_ms[op] / (n * calls), 2) for op, n in dynamodb.items()},
            "other_aws_requests": sum(v for (svc, _), v in counts.items() if svc != "dynamodb"),
            "cronofy_requests": len(stack.emulator.request_log),
            "p50_ms": round(statistics.median(times), 2), "p99_ms": round(times[int(len(times) * 0.99) - 1], 2),
            # the same without the time spent in DynamoDB calls (moto, in-process, serialises slowly)
            "p50_ms_without_dynamodb": round(statistics.median(own_times), 2),
            "p99_ms_without_dynamodb": round(own_times[int(len(own_times) * 0.99) - 1], 2),
        }
    print(json.dumps(result, indent=2))
    provenance.write("availability", result, {"users": users_n, "days": days, "calls": calls, "seed": 13})
    return result


if __name__ == "__main__":
    main()
