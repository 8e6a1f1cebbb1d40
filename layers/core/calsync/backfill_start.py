"""Starts backfill executions (kept apart from the backfill steps so the API functions, which only
start the workflow, do not import the sync engine). It was `workflow`: the name now says which
workflow and what it does with it."""

from __future__ import annotations

import json
import re


class BackfillWorkflow:
    """Starts executions of the backfill state machine."""

    def __init__(self, sfn_client, state_machine_arn: str | None):
        self._sfn = sfn_client
        self._arn = state_machine_arn

    def start(self, user_id: str, org_id: str, run_id: str, previous_calendar_id: str | None) -> None:
        if not self._arn:
            raise RuntimeError("BACKFILL_STATE_MACHINE_ARN is not set")
        name = re.sub(r"[^A-Za-z0-9_-]", "_", f"{user_id}-{run_id}")[-80:]
        from calsync.observability import logger

        payload = {"user_id": user_id, "org_id": org_id, "run_id": run_id,
                   "previous_calendar_id": previous_calendar_id,
                   "correlation_id": logger.get_correlation_id() or run_id}
        self._sfn.start_execution(stateMachineArn=self._arn, name=name, input=json.dumps(payload))
