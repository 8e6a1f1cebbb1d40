"""Webhook intake latency: 1,000 signed `change` notifications for a connected user's channel, each a
full handler invocation (HMAC, channel lookup on the by_channel index, channel token, one SQS send)
in one warm process under the local stack (moto in-process, so AWS calls cost moto's time, not a
network's). For contrast, the same number of `verification` notifications (HMAC only, no AWS call).

Prints p50/p99 in ms and writes bench/results/webhook_intake.json.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "core")]
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")

from bench import provenance  # noqa: E402
from localdev import browser  # noqa: E402
from localdev.emulator import sign_body  # noqa: E402
from localdev.stack import CLIENT_SECRET, DevStack  # noqa: E402

FUNCTION = "WebhookIntakeFunction"


def signed_event(channel: dict, kind: str, n: int) -> dict:
    notification = {"type": kind} | ({"changes_since": f"2026-11-24T10:{n // 60 % 60:02d}:{n % 60:02d}Z"}
                                     if kind == "change" else {})
    body = json.dumps({"notification": notification, "channel": {k: channel[k] for k in (
        "channel_id", "callback_url", "filters")}}, separators=(",", ":")).encode()
    token = channel["callback_url"].rsplit("/", 1)[1]
    path = f"/v1/webhooks/cronofy/{token}"
    return {
        "version": "2.0",
        "routeKey": "POST /v1/webhooks/cronofy/{channel_token}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json; charset=utf-8",
                    "cronofy-hmac-sha256": sign_body(CLIENT_SECRET, body)},
        "pathParameters": {"channel_token": token},
        "requestContext": {"http": {"method": "POST", "path": path}, "requestId": f"bench-{n}",
                           "routeKey": "POST /v1/webhooks/cronofy/{channel_token}", "stage": "$default"},
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def percentiles(samples_ms: list[float]) -> dict:
    cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return {"p50_ms": round(statistics.median(samples_ms), 3), "p99_ms": round(cuts[98], 3),
            "max_ms": round(max(samples_ms), 3), "mean_ms": round(statistics.fmean(samples_ms), 3)}


def timed(stack: DevStack, events: list[dict], expected_status: int) -> list[float]:
    samples = []
    for event in events:
        started = time.perf_counter()
        result = stack.invoke(FUNCTION, event)
        samples.append((time.perf_counter() - started) * 1000)
        assert result["statusCode"] == expected_status, result
    return samples


def main() -> dict:
    provenance.provenance()  # stamped at the start: the commit the run started from, and the load then
    n = int(os.environ.get("NOTIFICATIONS", "1000"))
    warmup = 50
    with DevStack() as stack:
        account = stack.emulator.add_calendar_account("google", "crew@example.com",
                                                      calendars=[{"name": "Work", "primary": True}])
        outcome = browser.connect(stack.browser("u_crew", "org_sunbright"), stack.base_url, "google",
                                  account["profile_id"])
        assert outcome["calendar_sync"] == "connected", outcome
        stack.drain()
        [channel] = stack.emulator.channels()

        print(f"  {warmup + n} signed change notifications, then {n} verifications ...", file=sys.stderr, flush=True)
        changes = [signed_event(channel, "change", i) for i in range(warmup + n)]
        # The first one builds the DynamoDB and SQS clients (part of a real cold start, after the imports)
        [first_ms] = timed(stack, changes[:1], 202)
        timed(stack, changes[1:warmup], 202)
        change_ms = timed(stack, changes[warmup:], 202)
        queued = len(stack.queue_messages("NotificationsQueue"))
        assert queued == warmup + n, queued

        verifications = [signed_event(channel, "verification", i) for i in range(n)]
        verification_ms = timed(stack, verifications, 200)

    summary = {
        "notifications": n,
        "change": percentiles(change_ms),
        "verification": percentiles(verification_ms),
        "first_change_ms": round(first_ms, 1),
        "note": "one process, warm handler, moto in-process for DynamoDB and SQS (no network)",
    }
    print(f"{n} signed change notifications (lookup + token + SQS send): "
          f"p50 {summary['change']['p50_ms']:.2f} ms, p99 {summary['change']['p99_ms']:.2f} ms")
    print(f"first change notification of the container (AWS clients built): {summary['first_change_ms']:.0f} ms")
    print(f"{n} verification notifications (HMAC only): "
          f"p50 {summary['verification']['p50_ms']:.2f} ms, p99 {summary['verification']['p99_ms']:.2f} ms")
    provenance.write("webhook_intake", summary, {"NOTIFICATIONS": n})
    return summary


if __name__ == "__main__":
    main()
