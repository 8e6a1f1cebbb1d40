"""A fair share of Cronofy's budget across orgs (issue 21 item 5): one org's weather day must not hold
the others back.

Every milestone push counts, per org, the milestones it synced in the current minute (one UpdateItem per
org in the batch, plus one on the all-orgs item: a batch holds up to 100 messages, so this is a few
hundredths of a write per message). Nothing else changes while the shared limiter has room. When it is
short (less than half its burst left, the point where interactive requests are already refused), the
batch's orgs are compared with the mean active org over the last minute (one BatchGetItem): an org that
took more than FACTOR times that mean (and more than FLOOR_SHARE of a minute's budget) has its messages handed back to
SQS as delayed copies, so the other orgs' messages, already in the batch or arriving meanwhile, go
first. A message is deferred at most MAX_DEFERRALS times (about a minute in all), so the heavy org is
slowed, never starved; when the limiter has room again nobody is deferred.

The counts are estimates on purpose (two buckets of a minute, the previous one weighted by how much of it
still falls inside the last 60 s); what matters is that the org that is flooding is the one that waits.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

BUCKET = 60  # seconds per counting bucket
SHORT_SHARE = 0.5  # the limiter is "short" when less than this share of its burst is left
FACTOR = 2.0  # an org over FACTOR x the mean active org's use in the last minute is over its share
# ... and over this share of what the limiter passes in a minute (about 24 milestones at Cronofy's real
# limits): an org this small is never deferred
FLOOR_SHARE = 0.05
DEFER_SECONDS = 15
MAX_DEFERRALS = 4
DEFER_ATTRIBUTE = "calsync-deferrals"
ALL = "*"


class FairShare:
    def __init__(self, dynamodb_client, table_name: str, limiter, clock=time.time):
        self._db = dynamodb_client
        self._table = table_name
        self._limiter = limiter
        self._clock = clock

    @staticmethod
    def _key(org_id: str, bucket: int) -> dict[str, Any]:
        return {"pk": {"S": f"ORGUSE#{org_id}"}, "sk": {"S": f"M#{bucket}"}}

    def short(self) -> bool:
        """Is the shared limiter short (one consistent read)?"""
        if self._limiter is None:
            return False
        return self._limiter.headroom() < self._limiter.burst * SHORT_SHARE

    def over_share(self, orgs: Iterable[str]) -> set[str]:
        """The orgs (of these) that took more than their share in the last minute, when the limiter is short;
        empty when it has room."""
        orgs = sorted(set(orgs))
        if not orgs or not self.short():
            return set()
        now = self._clock()
        bucket = int(now // BUCKET)
        weight = 1.0 - (now % BUCKET) / BUCKET  # how much of the previous bucket is within the last minute
        keys = [self._key(o, b) for o in [*orgs, ALL] for b in (bucket, bucket - 1)]
        got: dict[tuple[str, str], dict] = {}
        request: dict[str, Any] = {self._table: {"Keys": keys, "ConsistentRead": False}}
        for _ in range(5):
            out = self._db.batch_get_item(RequestItems=request)
            for item in out.get("Responses", {}).get(self._table, []):
                got[(item["pk"]["S"], item["sk"]["S"])] = item
            request = out.get("UnprocessedKeys") or {}
            if not request:
                break

        def used(org: str, field: str = "used") -> float:
            cur = got.get((f"ORGUSE#{org}", f"M#{bucket}"), {}).get(field, {}).get("N", 0)
            prev = got.get((f"ORGUSE#{org}", f"M#{bucket - 1}"), {}).get(field, {}).get("N", 0)
            return float(cur) + weight * float(prev)

        total, active = used(ALL), used(ALL, "orgs")
        if active < 2:  # one org alone: nobody to make room for
            return set()
        mean = total / active
        floor = FLOOR_SHARE * self._limiter.rate * BUCKET
        return {o for o in orgs if used(o) > max(floor, FACTOR * mean)}

    def record(self, counts: dict[str, int]) -> None:
        """This batch synced counts[org] milestones of each org."""
        counts = {o: n for o, n in counts.items() if n > 0}
        if not counts:
            return
        bucket = int(self._clock() // BUCKET)
        ttl = str((bucket + 3) * BUCKET)
        new_orgs = 0
        for org, n in counts.items():
            out = self._db.update_item(
                TableName=self._table, Key=self._key(org, bucket),
                UpdateExpression="ADD used :n SET #ttl = :ttl", ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={":n": {"N": str(n)}, ":ttl": {"N": ttl}}, ReturnValues="UPDATED_NEW")
            if int(float(out["Attributes"]["used"]["N"])) == n:  # this org's first milestones this minute
                new_orgs += 1
        self._db.update_item(
            TableName=self._table, Key=self._key(ALL, bucket),
            UpdateExpression="ADD used :n, orgs :k SET #ttl = :ttl", ExpressionAttributeNames={"#ttl": "ttl"},
            ExpressionAttributeValues={":n": {"N": str(sum(counts.values()))}, ":k": {"N": str(new_orgs)},
                                       ":ttl": {"N": ttl}})


def deferrals(message_attributes: dict) -> int:
    """How often this SQS record (Lambda's camelCase attributes) was deferred for its org's share."""
    value = (message_attributes or {}).get(DEFER_ATTRIBUTE) or {}
    try:
        return int(value.get("stringValue") or 0)
    except ValueError:
        return MAX_DEFERRALS
