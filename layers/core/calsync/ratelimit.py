"""One Cronofy rate limiter for every function (ARCHITECTURE §8): Cronofy allows 50 requests a second
and 500 a minute per application, for all users and functions together.

A GCRA (generic cell rate algorithm) bucket kept in one DynamoDB item: `tat` (theoretical arrival
time) advances by 1/rate per request and may run at most `burst/rate` ahead of now. In any window of
w seconds at most `burst + rate * w` requests pass, so one bucket enforces both limits when
    burst + rate * 1 <= per_second   and   burst + rate * 60 <= per_minute.
We keep a 5% margin under Cronofy's numbers (clocks and in-flight requests), which still drains a
backlog at ~87% of 500/minute.

`acquire()` never sleeps: it says how long to wait. The Cronofy client sleeps only short waits
(interactive requests) and otherwise raises CronofyRateLimited, so queue work goes back to SQS
with a visibility timeout instead of holding a Lambda. A 429 from Cronofy pushes `tat` forward
(`penalize`), so every function backs off together.
"""

from __future__ import annotations

import math
import time
from decimal import Decimal
from typing import Any

MARGIN = 0.95
# Queue work keeps this share of the burst to itself: an interactive request (a person waiting on a
# route) is granted only while the bucket is at most half full, so a busy web app can never starve
# milestone pushes, notifications and cleanups (they go first), while short interactive bursts pass.
RESERVED_FOR_QUEUE_SHARE = 0.5
# "queue" (milestone pushes, cleanups, backfills: writes someone is waiting to see on a calendar) uses the
# whole burst; "interactive" (a person on a route) and "background" (reading what changed on calendars
# after a notification: busy periods and two-way moves, which may lag a little at the busiest hour) use
# only the part queue work does not keep to itself, so when the limit is the bottleneck, calendar
# writes go first and the reads behind notifications take the rest.
PRIORITIES = ("queue", "interactive", "background")


def gcra_parameters(per_second: float, per_minute: float) -> tuple[float, float]:
    """(rate per second, burst) of one bucket that honours both sliding-window limits with the margin."""
    s, p = per_second * MARGIN, per_minute * MARGIN
    burst = max(1.0, math.floor((s - p / 60) / (1 - 1 / 60)))
    rate = min((p - burst) / 60, s - burst) if burst < s else p / 60
    return rate, burst


class RateLimiter:
    def __init__(self, dynamodb_client, table_name: str, per_second: float = 50, per_minute: float = 500,
                 key: str = "cronofy", clock=time.time):
        self._db = dynamodb_client
        self._table = table_name
        self._key = {"pk": {"S": f"RATELIMIT#{key}"}, "sk": {"S": "GCRA"}}
        self._clock = clock
        self.rate, self.burst = gcra_parameters(per_second, per_minute)
        # How much of the burst interactive requests may use (all of it when the burst is tiny).
        self.interactive_burst = max(1.0, self.burst - math.floor(self.burst * RESERVED_FOR_QUEUE_SHARE))
        self.granted = 0
        self.denied = 0

    def _read_tat(self) -> float | None:
        item = self._db.get_item(TableName=self._table, Key=self._key, ConsistentRead=True).get("Item")
        return float(item["tat"]["N"]) if item else None

    def _write_tat(self, old: float | None, new: float) -> bool:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Key": self._key,
            "UpdateExpression": "SET tat = :new",
            "ExpressionAttributeValues": {":new": {"N": str(Decimal(f"{new:.6f}"))}},
        }
        if old is None:
            kwargs["ConditionExpression"] = "attribute_not_exists(tat)"
        else:
            kwargs["ConditionExpression"] = "tat = :old"
            kwargs["ExpressionAttributeValues"][":old"] = {"N": str(Decimal(f"{old:.6f}"))}
        try:
            self._db.update_item(**kwargs)
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def acquire(self, n: int = 1, priority: str = "queue") -> float:
        """Take n requests' worth; 0.0 if granted, else the seconds to wait (nothing is taken).

        Any priority but "queue" may only use `interactive_burst` of the burst: queue work goes first."""
        if priority not in PRIORITIES:
            raise ValueError(f"priority is one of {PRIORITIES}")
        burst = self.burst if priority == "queue" else self.interactive_burst
        for _ in range(8):
            stored = self._read_tat()
            now = self._clock()
            tat = max(stored if stored is not None else now, now)
            new_tat = tat + n / self.rate
            wait = new_tat - now - burst / self.rate
            if wait > 1e-6:
                self.denied += 1
                return wait
            if self._write_tat(stored, new_tat):
                self.granted += n
                return 0.0
        return 0.05  # heavy contention: ask the caller to come back in a moment

    def headroom(self) -> float:
        """Requests that could pass right now without waiting (0..burst): what live work leaves.
        One consistent read; nothing is taken."""
        stored = self._read_tat()
        now = self._clock()
        backlog = max(0.0, (stored if stored is not None else now) - now)
        return max(0.0, self.burst - backlog * self.rate)

    def penalize(self, seconds: float) -> None:
        """Cronofy said 429: nobody sends anything for `seconds`."""
        for _ in range(5):
            stored = self._read_tat()
            floor = self._clock() + seconds + self.burst / self.rate
            if stored is not None and stored >= floor:
                return
            if self._write_tat(stored, floor):
                return
