"""Reconciler, on an EventBridge schedule (every 5 minutes by default): one slot of users per run, so
every connected user is visited once an hour; see calsync/reconcile.py for what it repairs.

Manual runs (operations): {"user_ids": ["u_1", ...]} or {"all_slots": true}.
"""

from __future__ import annotations

import time

from calsync import runtime
from calsync.observability import logger, metrics
from calsync.store import RECONCILE_SLOTS

SCHEDULE_MINUTES = 5


def _users(event: dict) -> list[str]:
    store = runtime.store()
    if event.get("user_ids"):
        return list(event["user_ids"])
    if event.get("all_slots"):
        return [u for slot in range(RECONCILE_SLOTS) for u in store.users_in_slot(slot)]
    slot = event.get("slot")
    if slot is None:
        slot = int(time.time() // (SCHEDULE_MINUTES * 60)) % RECONCILE_SLOTS
    return store.users_in_slot(int(slot))


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context) -> dict:
    users = _users(event or {})
    report = runtime.reconciler().run(users)
    logger.info("reconcile run", extra={"report": report})
    return report
