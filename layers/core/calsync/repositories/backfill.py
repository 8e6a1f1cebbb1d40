"""A user's backfill: its progress (`pk=USER#{user}, sk=BACKFILL`) and the chunks of milestone ids of
a run (`pk=BACKFILL#{run}, sk=CHUNK#{n}`, expiring)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from calsync import keys
from calsync.dynamo import Repository, to_item

if TYPE_CHECKING:  # the models (pydantic) load when first needed
    from calsync.models import BackfillProgress


class BackfillRepository(Repository):
    def put_backfill(self, user_id: str, run_id: str, progress: BackfillProgress, error: str | None = None,
                     started_at: float | None = None) -> None:
        self.table.put({**keys.backfill(user_id), "run_id": run_id, "error": error,
                        "started_at": None if started_at is None else Decimal(f"{started_at:.3f}"),
                        **progress.model_dump()})

    def add_backfill_done(self, user_id: str, run_id: str, count: int) -> None:
        """Count finished milestones of the current run (a stale run's chunks count nothing)."""
        self.table.write_if("update_item", Key=to_item(keys.backfill(user_id)), UpdateExpression="ADD done :n",
                            ConditionExpression="run_id = :run",
                            ExpressionAttributeValues=to_item({":n": count, ":run": run_id}))

    def get_backfill(self, user_id: str) -> dict | None:
        return self.table.get(keys.backfill(user_id))

    def backfills(self, user_ids: list[str]) -> dict[str, dict]:
        """Backfill progress items by user id (BatchGetItem, 100 keys a request)."""
        found = self.table.batch_get([keys.backfill(u) for u in dict.fromkeys(user_ids)])
        return {keys.user_of(item["pk"]): item for item in found}

    def put_chunks(self, run_id: str, chunks: list[list[str]], expires_at: int) -> None:
        for n, ids in enumerate(chunks):
            self.table.put({**keys.backfill_chunk(run_id, n), "milestone_ids": ids, "ttl": expires_at})

    def get_chunk(self, run_id: str, n: int) -> list[str]:
        values = self.table.get(keys.backfill_chunk(run_id, n))
        if values is None:
            raise LookupError(f"backfill chunk {run_id}/{n} not found")
        return list(values["milestone_ids"])
