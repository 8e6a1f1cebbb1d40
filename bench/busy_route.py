"""Issue 4's busy-route figures: GET /v1/orgs/{org}/busy for 50 users x 14 days, answered from
DynamoDB alone. Prints DynamoDB requests per call, Cronofy requests (0) and time p50/p99 of the
handler (in-process, warm; the router's HTTP hop excluded)."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "core")]
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")

import botocore.client  # noqa: E402

from bench import provenance  # noqa: E402
from calsync.busy import Busy  # noqa: E402
from calsync.models import Connection, ConnectionState, utcnow  # noqa: E402
from localdev.builders import in_days, iso  # noqa: E402
from localdev.stack import DevStack  # noqa: E402


class OwnEvents:
    """Seeds busy periods directly through Busy.rebuild with a stand-in client (no connect flow needed):
    its Read Events answers the user's own events."""

    def __init__(self, events):
        self.events = events

    def read_events(self, **_):
        return iter(self.events)


def main(users_n: int = 50, calls: int = 200) -> dict:
    provenance.provenance()  # stamped at the start: the commit the run started from, and the load then
    with DevStack() as stack:
        from calsync import wiring

        busy: Busy = wiring.busy()
        now = utcnow()
        print(f"  seeding {users_n} users' busy periods, then {calls} calls ...", file=sys.stderr, flush=True)
        for i in range(users_n):
            conn = Connection(user_id=f"u_{i}", org_id="org_1", state=ConnectionState.CONNECTED, provider="google",
                              cronofy_sub=f"acc_{i}", connected_at=now, updated_at=now)
            events = [{"event_uid": f"evt_{i}_{d}", "start": iso(in_days(d, 9 + (i % 5))),
                       "end": iso(in_days(d, 10 + (i % 5))), "transparency": "opaque", "status": "confirmed"}
                      for d in range(0, 60, 2)]
            busy.rebuild(conn, OwnEvents(events), now)
        session = stack.browser("u_0", "org_1")
        token = session.headers["Authorization"]
        params = {"user_ids": ",".join(f"u_{i}" for i in range(users_n)), "from": iso(in_days(0, 0)),
                  "to": iso(in_days(14, 0))}
        event_path = "/v1/orgs/org_1/busy"
        counts: Counter = Counter()
        original = botocore.client.BaseClient._make_api_call

        def counting(client, operation, kwargs):
            counts[(client.meta.service_model.service_name, operation)] += 1
            return original(client, operation, kwargs)

        botocore.client.BaseClient._make_api_call = counting
        stack.emulator.clear_request_log()
        times = []
        try:
            for i in range(calls):
                if i and i % 50 == 0:
                    print(f"  {i} of {calls} calls", file=sys.stderr, flush=True)
                started = time.perf_counter()
                resp = session.get(stack.url(event_path), params=params, headers={"Authorization": token})
                times.append((time.perf_counter() - started) * 1000)
                assert resp.status_code == 200 and len(resp.json()["users"]) == users_n
        finally:
            botocore.client.BaseClient._make_api_call = original
        times.sort()
        result = {
            "users": users_n, "days": 14, "calls": calls,
            "dynamodb_requests_per_call": sum(v for (svc, _), v in counts.items() if svc == "dynamodb") / calls,
            "dynamodb_operations": {op: v / calls for (svc, op), v in counts.items() if svc == "dynamodb"},
            "cronofy_requests": len(stack.emulator.request_log),
            "p50_ms": round(statistics.median(times), 2), "p99_ms": round(times[int(len(times) * 0.99) - 1], 2),
        }
    print(json.dumps(result, indent=2))
    provenance.write("busy_route", result, {"users": users_n, "calls": calls})
    return result


if __name__ == "__main__":
    main()
