"""Busy periods per user: one item per week (`sk=BUSY#{Monday}`), holding `periods`, a map from a key
to "start/end" and nothing else of the event. The key is a hash of the event's id (calsync.busy), or,
for a week too busy to keep each event, a "~" key of a merged block. An event is kept in every week it
overlaps within the scheduler's window, so a read of a range needs only that range's weeks. Items expire
(TTL) two weeks after their week ends.

Items are bounded by size, not only by week: DynamoDB refuses an item over 400 KB (calsync.dynamo
item_size). A week's map is kept under ONE_ITEM bytes in its own item; a larger one (only merged blocks:
calsync.busy.week_form decides) is split by size over at most MAX_PARTS items: the week's item holds the
first chunk, `parts` and a `generation`, and the further items `sk=BUSY#{Monday}#{generation}#{n}` are
written before it and never rewritten, so a reader that follows the week's item always reads one
whole write. A week whose periods are not known exactly (an event changed inside merged blocks) has
`unsure` until the next rebuild."""

from __future__ import annotations

import uuid
from typing import Any

from calsync import keys
from calsync.dynamo import ITEM_SIZE_LIMIT, Repository

ONE_ITEM = ITEM_SIZE_LIMIT - 10 * 1024  # a week's `periods` map in one item: room for its other attributes
MAX_PARTS = 4
# The most a week's `periods` may take: MAX_PARTS items, less what chunks' packing in key order may leave
# unused at the end of each (an entry is well under 1 KB)
WEEK_CAPACITY = (ONE_ITEM - 1024) * MAX_PARTS


def entry_size(key: str, period: str) -> int:
    """The bytes one map entry takes as DynamoDB counts (1 byte of overhead, the key, the string)."""
    return 1 + len(key.encode()) + len(period.encode())


def periods_size(periods: dict[str, str]) -> int:
    """The bytes a `periods` map takes as DynamoDB counts (calsync.dynamo.attribute_size)."""
    return 3 + sum(entry_size(k, v) for k, v in periods.items())


def chunks(periods: dict[str, str]) -> list[dict[str, str]]:
    """`periods` in maps of at most ONE_ITEM bytes each, in key order (one map when it fits)."""
    out: list[dict[str, str]] = [{}]
    size = 3
    for key in sorted(periods):
        entry = entry_size(key, periods[key])
        if out[-1] and size + entry > ONE_ITEM:
            out.append({})
            size = 3
        out[-1][key] = periods[key]
        size += entry
    return out


class BusyStore(Repository):
    def weeks_of_user(self, user_id: str) -> dict[str, dict]:
        """Every stored week of a user: {week (Monday, ISO date): item}, `periods` holding the whole
        week's map (its further items joined in) (one query, paged)."""
        items = list(self.table.query_items(
            ConsistentRead=True, KeyConditionExpression="pk = :pk AND begins_with(sk, :busy)",
            ExpressionAttributeValues={":pk": keys.user_pk(user_id), ":busy": keys.BUSY_WEEK}))
        weeks = {keys.week_of(item["sk"]): item for item in items if keys.busy_part_of(item["sk"]) is None}
        for item in items:
            part = keys.busy_part_of(item["sk"])
            week = weeks.get(keys.week_of(item["sk"]))
            if part is not None and week is not None and part[0] == week.get("generation") \
                    and part[1] < int(week.get("parts", 1)):
                week["periods"] = {**(week.get("periods") or {}), **(item.get("periods") or {})}
        return weeks

    def write_weeks(self, user_id: str, org_id: str, weeks: dict[str, dict[str, str]], updated_at: str,
                    expires_at: dict[str, int], previous: dict[str, dict] | None = None,
                    unsure: set[str] | None = None) -> None:
        """Store these weeks' periods (an empty map deletes the week), 25 items a request: a map larger
        than one item is split over further items, written first. `previous` (weeks_of_user's answer)
        lets the further items of the writes replaced be deleted now (else their TTL does); `unsure`
        names weeks whose periods are not known exactly."""
        parts: list[dict[str, Any]] = []
        puts: list[dict[str, Any]] = []
        deletes: list[keys.Key] = []
        for week, periods in weeks.items():
            key = keys.busy_week(user_id, week)
            common = {"org_id": org_id, "updated_at": updated_at, "ttl": expires_at.get(week)}
            old = (previous or {}).get(week) or {}
            if old.get("generation"):
                deletes += [keys.busy_week_part(user_id, week, old["generation"], n)
                            for n in range(1, int(old.get("parts", 1)))]
            if not periods:
                deletes.append(key)
                continue
            pieces = chunks(periods)
            if len(pieces) > MAX_PARTS:
                raise ValueError(f"busy week {week}: {len(pieces)} items, at most {MAX_PARTS}")
            item: dict[str, Any] = {**key, **common, "periods": pieces[0]}
            if len(pieces) > 1:
                generation = uuid.uuid4().hex[:12]
                item.update(parts=len(pieces), generation=generation)
                parts += [{**keys.busy_week_part(user_id, week, generation, n), **common, "periods": piece}
                          for n, piece in enumerate(pieces[1:], start=1)]
            if unsure and week in unsure:
                item["unsure"] = True
            puts.append(item)
        self.table.batch_write(parts)  # a week's further items before the item that names them
        self.table.batch_write(puts, deletes)

    def touch(self, user_id: str, org_id: str, updated_at: str) -> None:
        """Record a successful refresh that changed nothing (the `as_of` of a user with no busy time)."""
        self.table.put({**keys.busy_bookkeeping(user_id), "org_id": org_id, "updated_at": updated_at})

    def get_many(self, user_ids: list[str], weeks: list[str]) -> dict[str, dict]:
        """{user: {"org_id", "updated_at", "periods": ["start/end", ...]}} for these weeks (and "unsure": True
        when one of them is not known exactly), from
        BatchGetItem (100 keys a request: ceil(users x (weeks + 1) / 100) requests, and one more round for
        the further items of weeks too busy for one item)."""
        wanted = [key for u in dict.fromkeys(user_ids)
                  for key in [keys.busy_bookkeeping(u), *(keys.busy_week(u, w) for w in weeks)]]
        items = self.table.batch_get(wanted)
        further = [keys.busy_week_part(keys.user_of(i["pk"]), keys.week_of(i["sk"]), i["generation"], n)
                   for i in items if i.get("generation") for n in range(1, int(i.get("parts", 1)))]
        if further:
            got = self.table.batch_get(further)
            # A part gone is a week rewritten between the two reads: its blocks are unknown, not free.
            missing = {(k["pk"], k["sk"]) for k in further} - {(i["pk"], i["sk"]) for i in got}
            items += got + [{"pk": pk, "unsure": True} for pk in {pk for pk, _ in missing}]
        found: dict[str, dict] = {}
        for item in items:
            entry = found.setdefault(keys.user_of(item["pk"]), {"org_id": item.get("org_id"), "updated_at": None,
                                                                "periods": []})
            if item.get("updated_at") and (entry["updated_at"] is None or item["updated_at"] > entry["updated_at"]):
                entry["updated_at"] = item["updated_at"]
            entry["periods"].extend((item.get("periods") or {}).values())
            if item.get("unsure"):
                entry["unsure"] = True
        return found

    def delete_user(self, user_id: str) -> None:
        items = self.table.query_items(
            ConsistentRead=True, KeyConditionExpression="pk = :pk AND begins_with(sk, :busy)",
            ExpressionAttributeValues={":pk": keys.user_pk(user_id), ":busy": keys.BUSY_WEEK},
            ProjectionExpression="pk, sk")
        self.table.batch_write(deletes=[*({"pk": i["pk"], "sk": i["sk"]} for i in items),
                                        keys.busy_bookkeeping(user_id)])
