"""Backfill steps for the state machine (statemachines/backfill.asl.json): `plan`, `chunk`,
`finalize`, `fail`. Errors keep their class name (CronofyRateLimited, CronofyUnavailable,
BackfillChunkFailed) so the state machine's Retry and Catch can match on them."""

from __future__ import annotations

from calsync import wiring
from calsync.observability import logger, metrics

ACTIONS = {"plan", "chunk", "finalize", "fail"}


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context) -> dict:
    logger.set_correlation_id(event.get("correlation_id") or event.get("run_id"))
    action = event.get("action")
    if action not in ACTIONS:
        raise ValueError(f"unknown backfill action {action!r}")
    with logger.append_context_keys(user_id=event.get("user_id"), run_id=event.get("run_id"), action=action):
        return getattr(wiring.backfill_steps(), action)(event)
