"""Busy periods per user: one item per week (`sk=BUSY#{Monday}`), holding `periods`, a map from a
hash of the event's id to "start/end" and nothing else of the event. An event is kept in every week
it overlaps, so a read of a range needs only that range's weeks. Items stay small however busy a
calendar is (a week of ~6,000 events is ~350 KB; a whole calendar in one item was not bounded), and
expire (TTL) two weeks after their week ends."""

from __future__ import annotations

from typing import Any

from calsync import keys
from calsync.dynamo import Repository


class BusyStore(Repository):
    def weeks_of_user(self, user_id: str) -> dict[str, dict]:
        """Every stored week of a user: {week (Monday, ISO date): item} (one query, paged)."""
        items = self.table.query_items(
            ConsistentRead=True, KeyConditionExpression="pk = :pk AND begins_with(sk, :busy)",
            ExpressionAttributeValues={":pk": keys.user_pk(user_id), ":busy": keys.BUSY_WEEK})
        return {keys.week_of(item["sk"]): item for item in items}

    def write_weeks(self, user_id: str, org_id: str, weeks: dict[str, dict[str, str]], updated_at: str,
                    expires_at: dict[str, int]) -> None:
        """Store these weeks' periods (an empty map deletes the week), 25 items a request."""
        puts: list[dict[str, Any]] = []
        deletes: list[keys.Key] = []
        for week, periods in weeks.items():
            key = keys.busy_week(user_id, week)
            if periods:
                puts.append({**key, "org_id": org_id, "updated_at": updated_at, "periods": periods,
                             "ttl": expires_at[week]})
            else:
                deletes.append(key)
        self.table.batch_write(puts, deletes)

    def touch(self, user_id: str, org_id: str, updated_at: str) -> None:
        """Record a successful refresh that changed nothing (the `as_of` of a user with no busy time)."""
        self.table.put({**keys.busy_bookkeeping(user_id), "org_id": org_id, "updated_at": updated_at})

    def get_many(self, user_ids: list[str], weeks: list[str]) -> dict[str, dict]:
        """{user: {"org_id", "updated_at", "periods": ["start/end", ...]}} for these weeks, from
        BatchGetItem (100 keys a request: ceil(users x (weeks + 1) / 100) requests)."""
        wanted = [key for u in dict.fromkeys(user_ids)
                  for key in [keys.busy_bookkeeping(u), *(keys.busy_week(u, w) for w in weeks)]]
        found: dict[str, dict] = {}
        for item in self.table.batch_get(wanted):
            entry = found.setdefault(keys.user_of(item["pk"]),
                                     {"org_id": item.get("org_id"), "updated_at": None, "periods": []})
            if item.get("updated_at") and (entry["updated_at"] is None or item["updated_at"] > entry["updated_at"]):
                entry["updated_at"] = item["updated_at"]
            entry["periods"].extend((item.get("periods") or {}).values())
        return found

    def delete_user(self, user_id: str) -> None:
        weeks = [keys.busy_week(user_id, w) for w in self.weeks_of_user(user_id)]
        self.table.batch_write(deletes=[*weeks, keys.busy_bookkeeping(user_id)])
