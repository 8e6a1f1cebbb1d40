"""Open conflicts (calsync.conflicts): one item per (milestone, user) in the org's partition,
`sk=CONFLICT#{user}#{milestone}`, from its detection until its resolution was sent. It holds ids, the
milestone's span and version, the overlap and the state, nothing of the user's events. Every change is
conditional on the state read (and the conflict id), so two writers judging the same pair at once record
(and send) it once. Items expire (TTL) two weeks after the milestone ends: a conflict on a milestone that
is over is not resolved, it is forgotten."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from calsync import keys
from calsync.conflicts import Conflict, Interval
from calsync.dynamo import Repository, to_item

KEEP_AFTER_END = timedelta(days=14)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _interval(item: dict[str, Any], name: str) -> Interval:
    return _instant(item[f"{name}_start"]), _instant(item[f"{name}_end"])


def conflict_of(item: dict[str, Any]) -> Conflict:
    return Conflict(org_id=item["org_id"], user_id=item["user_id"], milestone_id=item["milestone_id"],
                    conflict_id=item["conflict_id"], state=item["state"],
                    milestone_version=int(item["milestone_version"]), span=_interval(item, "span"),
                    overlap=_interval(item, "overlap"), detected_at=_instant(item["detected_at"]),
                    why=item.get("why"))


def _values(c: Conflict) -> dict[str, Any]:
    return {**keys.conflict(c.org_id, c.user_id, c.milestone_id), "org_id": c.org_id, "user_id": c.user_id,
            "milestone_id": c.milestone_id, "conflict_id": c.conflict_id, "state": c.state,
            "milestone_version": c.milestone_version, "span_start": _iso(c.span[0]), "span_end": _iso(c.span[1]),
            "overlap_start": _iso(c.overlap[0]), "overlap_end": _iso(c.overlap[1]),
            "detected_at": _iso(c.detected_at), "why": c.why,
            "ttl": int((c.span[1] + KEEP_AFTER_END).timestamp())}


class ConflictRepository(Repository):
    def conflicts_of_user(self, org_id: str, user_id: str) -> dict[str, Conflict]:
        """A user's stored conflicts in an org, by milestone id (one query)."""
        items = self.table.query_items(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)", ConsistentRead=True,
            ExpressionAttributeValues={":pk": keys.org_pk(org_id), ":prefix": keys.conflict_user_prefix(user_id)})
        # (a user id holding "#" could share another's prefix: the item's own user_id decides)
        return {item["milestone_id"]: conflict_of(item) for item in items if item.get("user_id") == user_id}

    def conflicts_of_org(self, org_id: str) -> list[Conflict]:
        """Every stored conflict of an org (one query per 1 MB)."""
        items = self.table.query_items(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)", ConsistentRead=True,
            ExpressionAttributeValues={":pk": keys.org_pk(org_id), ":prefix": keys.CONFLICT})
        return [conflict_of(item) for item in items]

    def conflicts_of_milestone(self, org_id: str, milestone_id: str, user_ids: list[str]) -> dict[str, Conflict]:
        """These users' stored conflicts on one milestone, by user id (BatchGetItem, 100 keys a request)."""
        found = self.table.batch_get([keys.conflict(org_id, u, milestone_id) for u in dict.fromkeys(user_ids)])
        return {item["user_id"]: conflict_of(item) for item in found}

    def add_conflict(self, c: Conflict) -> bool:
        """Record a new conflict unless the pair already has one (False: another writer got there first)."""
        return self.table.write_if("put_item", Item=to_item(_values(c)),
                                   ConditionExpression="attribute_not_exists(pk)") is not None

    def replace_conflict(self, c: Conflict, state: str) -> bool:
        """Store `c` over the same conflict while it is still in `state` (False: it changed meanwhile)."""
        return self.table.write_if(
            "put_item", Item=to_item(_values(c)), ConditionExpression="conflict_id = :c AND #s = :s",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues=to_item({":c": c.conflict_id, ":s": state})) is not None

    def delete_conflict(self, c: Conflict) -> bool:
        """Forget a conflict whose resolution was sent (only that conflict, never a newer one of the pair)."""
        return self.table.write_if(
            "delete_item", Key=to_item(keys.conflict(c.org_id, c.user_id, c.milestone_id)),
            ConditionExpression="conflict_id = :c",
            ExpressionAttributeValues=to_item({":c": c.conflict_id})) is not None
