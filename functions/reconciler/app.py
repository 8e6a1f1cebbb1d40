"""Reconciler, on an EventBridge schedule (every 5 minutes by default): visits the users whose visit is
due, most overdue first, within what the shared Cronofy limiter has left after live work; see
calsync/reconcile.py for what a visit does and costs.

Manual runs (operations): {"user_ids": ["u_1", ...]} visits those users now, due or not; {"all": true}
visits every connection the reconciler looks after, due or not (within the same budget).
"""

from __future__ import annotations

import time

from calsync import wiring
from calsync.observability import logger, metrics

MAX_RUN_SECONDS = 240  # under the 5-minute schedule: runs do not overlap (reserved concurrency 1 too)
MARGIN_SECONDS = 30


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context) -> dict:
    event = event or {}
    seconds = MAX_RUN_SECONDS
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        remaining = context.get_remaining_time_in_millis() / 1000
        seconds = min(seconds, remaining - MARGIN_SECONDS if remaining > 2 * MARGIN_SECONDS else remaining / 2)
    user_ids = list(event["user_ids"]) if event.get("user_ids") else None
    if event.get("all"):
        user_ids = wiring.store().users_due("9999-12-31T23:59:59Z", 100_000)
    report = wiring.reconciler().run(user_ids, deadline=time.monotonic() + max(1.0, seconds))
    logger.info("reconcile run", extra={"report": report})
    return report
