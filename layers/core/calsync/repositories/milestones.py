"""A milestone's partition: its mirror (the newest version we were sent), its schedule index entries
(GSI by_assignee: who it is scheduled for, by start) and the event ref of every user we wrote it to
(GSI by_user_events: a user's refs). One query of the partition is all milestone push needs to decide.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from calsync import keys
from calsync.dynamo import Repository, from_item, to_item, without_keys
from calsync.errors import MilestoneOrgMismatch
from calsync.slots import LONGEST_ASSIGNMENT

if TYPE_CHECKING:  # the models (pydantic) load when first needed
    from calsync.models import EventRef


SHORT_ASSIGNMENT = timedelta(days=7)
"""Milestones up to this long are not recorded as a user's longest: a scheduler's lookback covers them."""


class MilestonePartition(NamedTuple):
    """What the table holds of one milestone (all of it, or one user's share of it)."""

    mirror: dict[str, Any] | None
    """The newest version's item (`org_id`, `version`, `deleted`, `body`), None before any."""
    scheduled: dict[str, str]
    """{user: schedule sort key ("{start UTC}#{milestone id}")}"""
    refs: dict[str, EventRef]
    """{user: the event written to their calendar}"""


def ref_from(values: dict[str, Any]) -> EventRef:
    from calsync.models import EventRef

    return EventRef.model_validate(without_keys(values, "ref_user_pk", "ref_user_sk"))


def _ref_values(ref: EventRef) -> dict[str, Any]:
    data = ref.model_dump(mode="json", exclude_none=True)
    data.update(keys.ref(ref.milestone_id, ref.user_id), ref_user_pk=keys.events_pk(ref.user_id),
                ref_user_sk=ref.milestone_id)
    return data


def _add_to(partition: MilestonePartition, item: dict[str, Any]) -> MilestonePartition:
    """`partition` with one of its items read (the mirror replaces the tuple; the maps are filled in place)."""
    sk = item["sk"]
    if sk == keys.MIRROR_SK:
        return partition._replace(mirror=item)
    if sk.startswith(keys.SCHEDULED):
        partition.scheduled[item["user_id"]] = item["assignee_sk"]
    elif sk.startswith(keys.REF):
        partition.refs[item["user_id"]] = ref_from(item)
    return partition


class MilestoneRepository(Repository):
    # ---- mirror ------------------------------------------------------------------------------

    def put_mirror_if_newer(self, org_id: str, milestone_id: str, version: int, body: str | None) -> bool:
        """Store a milestone version (body None = deleted) unless the mirror already has it or newer.

        A deletion also wins over an upsert of the same version (the core may delete without bumping
        the version); a repeated deletion, or an upsert at the deleted version, changes nothing.

        A milestone belongs to the org that first sent it: a message from another org naming the same
        milestone id raises MilestoneOrgMismatch and changes nothing."""
        newer = "#v < :v OR (#v = :v AND deleted = :live)" if body is None else "#v < :v"
        values = {":v": version, ":org": org_id} | ({":live": False} if body is None else {})
        failed = self.table.conditional_failure(
            "put_item",
            Item=to_item({**keys.mirror(milestone_id), "org_id": org_id, "version": version, "deleted": body is None,
                          "body": body}),
            ConditionExpression=f"attribute_not_exists(pk) OR (({newer}) AND org_id = :org)",
            ExpressionAttributeNames={"#v": "version"},
            ExpressionAttributeValues=to_item(values),
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        if failed is None:
            return True
        old = from_item(failed.get("Item") or {})
        if not old:  # older SDKs/emulators do not return the item: read it
            old = self.mirrors([milestone_id]).get(milestone_id, {})
        if old.get("org_id") not in (None, org_id):
            raise MilestoneOrgMismatch(f"milestone {milestone_id} belongs to another org")
        return False

    def mirrors(self, milestone_ids: list[str]) -> dict[str, dict]:
        """Newest mirror items by milestone id (BatchGetItem, 100 keys a request)."""
        found = self.table.batch_get([keys.mirror(m) for m in dict.fromkeys(milestone_ids)])
        return {keys.milestone_of(item["pk"]): item for item in found}

    # ---- partitions --------------------------------------------------------------------------

    def milestone_partition(self, milestone_id: str) -> MilestonePartition:
        """The mirror, schedule entries and event refs of a milestone, in one query."""
        partition = MilestonePartition(None, {}, {})
        for item in self.table.query_items(KeyConditionExpression="pk = :pk", ConsistentRead=True,
                                           ExpressionAttributeValues={":pk": keys.milestone_pk(milestone_id)}):
            partition = _add_to(partition, item)
        return partition

    def partitions_for_user(self, milestone_ids: list[str], user_id: str) -> dict[str, MilestonePartition]:
        """Like milestone_partition, for one user's share of many milestones: BatchGetItem instead of a
        query per milestone (the backfill's read path)."""
        ids = list(dict.fromkeys(milestone_ids))
        found = {m: MilestonePartition(None, {}, {}) for m in ids}
        wanted = [key for m in ids for key in (keys.mirror(m), keys.scheduled(m, user_id), keys.ref(m, user_id))]
        for item in self.table.batch_get(wanted):
            milestone_id = keys.milestone_of(item["pk"])
            found[milestone_id] = _add_to(found[milestone_id], item)
        return found

    # ---- schedule index (GSI by_assignee) ----------------------------------------------------

    def set_schedule_index(self, milestone_id: str, add: dict[str, str], remove: list[str]) -> None:
        """Keep the by_assignee index entries of a milestone equal to its current schedule."""
        for user_id, sort_key in add.items():
            self.table.put({**keys.scheduled(milestone_id, user_id), "user_id": user_id,
                            "assignee_pk": keys.assignee_pk(user_id), "assignee_sk": sort_key})
        for user_id in remove:
            self.table.delete(keys.scheduled(milestone_id, user_id))

    def scheduled_for_user(self, user_id: str, since: str) -> list[str]:
        """Milestone ids scheduled for a user starting at or after `since` (UTC ISO)."""
        items = self.table.query_items(IndexName="by_assignee",
                                       KeyConditionExpression="assignee_pk = :u AND assignee_sk >= :since",
                                       ExpressionAttributeValues={":u": keys.assignee_pk(user_id), ":since": since})
        return [keys.milestone_of(item["pk"]) for item in items]

    def orgs_assigning(self, user_id: str, limit: int = 20) -> set[str]:
        """The orgs whose scheduled milestones (the core platform's messages, which carry org_id with the
        assignee ids) name this user: one query of GSI by_assignee (at most `limit` entries) and one
        BatchGetItem of their mirrors."""
        items = self.table.query_items(max_items=limit, IndexName="by_assignee",
                                       KeyConditionExpression="assignee_pk = :u",
                                       ExpressionAttributeValues={":u": keys.assignee_pk(user_id)})
        ids = [keys.milestone_of(item["pk"]) for item in items][:limit]
        return {str(m["org_id"]) for m in self.mirrors(ids).values() if m.get("org_id")} if ids else set()

    def assigned_milestone_ids(self, user_id: str, start_from: str, start_before: str) -> list[str]:
        """Milestones scheduled for a user that start in [start_from, start_before) (UTC ISO), by start;
        one query of GSI by_assignee (keys only) per 1 MB."""
        items = self.table.query_items(
            IndexName="by_assignee",
            # sort keys are "{start}#{milestone}": "{start_before}" sorts before any key starting then
            KeyConditionExpression="assignee_pk = :u AND assignee_sk BETWEEN :a AND :b",
            ExpressionAttributeValues={":u": keys.assignee_pk(user_id), ":a": start_from, ":b": start_before})
        return [keys.milestone_of(item["pk"]) for item in items]

    def note_assignment_span(self, user_ids: list[str], span: timedelta) -> None:
        """Record `span` as these users' longest assignment when it is longer than SHORT_ASSIGNMENT and
        than what is recorded (one conditional PutItem per user, only for such long milestones; the
        record only grows: a deleted or shortened milestone leaves it, which only widens lookbacks)."""
        if span <= SHORT_ASSIGNMENT:
            return
        seconds = int(min(span, LONGEST_ASSIGNMENT).total_seconds())
        for user_id in dict.fromkeys(user_ids):
            self.table.write_if(
                "put_item", Item=to_item({**keys.longest_assignment(user_id), "seconds": seconds}),
                ConditionExpression="attribute_not_exists(pk) OR #s < :s",
                ExpressionAttributeNames={"#s": "seconds"}, ExpressionAttributeValues=to_item({":s": seconds}))

    def longest_assignments(self, user_ids: list[str]) -> dict[str, timedelta]:
        """Each user's longest assignment, at least SHORT_ASSIGNMENT (BatchGetItem, 100 keys a request)."""
        found = {keys.user_of(item["pk"]): timedelta(seconds=int(item["seconds"]))
                 for item in self.table.batch_get([keys.longest_assignment(u) for u in dict.fromkeys(user_ids)])}
        return {u: min(max(found.get(u, SHORT_ASSIGNMENT), SHORT_ASSIGNMENT), LONGEST_ASSIGNMENT) for u in user_ids}

    # ---- event refs --------------------------------------------------------------------------

    def put_ref(self, ref: EventRef) -> bool:
        """Record a write; never moves a ref back to an older milestone version."""
        return self.table.write_if(
            "put_item", Item=to_item(_ref_values(ref)), ConditionExpression="attribute_not_exists(pk) OR #v <= :v",
            ExpressionAttributeNames={"#v": "version"}, ExpressionAttributeValues=to_item({":v": ref.version}),
        ) is not None

    def put_refs(self, refs: list[EventRef]) -> None:
        """Record many writes, each conditional on its version. (A TransactWriteItems of 50 would be
        one request, but costs double write capacity and one moved ref would cancel all 50.)"""
        for ref in refs:
            self.put_ref(ref)

    def get_ref(self, milestone_id: str, user_id: str) -> EventRef | None:
        values = self.table.get(keys.ref(milestone_id, user_id))
        return ref_from(values) if values else None

    def delete_ref(self, milestone_id: str, user_id: str, version: int | None = None) -> bool:
        """Forget a write; with `version`, only if no newer version was written meanwhile."""
        condition: dict[str, Any] = {}
        if version is not None:
            condition = {"ConditionExpression": "attribute_not_exists(pk) OR #v <= :v",
                         "ExpressionAttributeNames": {"#v": "version"},
                         "ExpressionAttributeValues": to_item({":v": version})}
        deleted = self.table.write_if("delete_item", Key=to_item(keys.ref(milestone_id, user_id)), **condition)
        return deleted is not None

    def refs_of_user(self, user_id: str) -> list[EventRef]:
        items = self.table.query_items(IndexName="by_user_events", KeyConditionExpression="ref_user_pk = :u",
                                       ExpressionAttributeValues={":u": keys.events_pk(user_id)})
        return [ref_from(item) for item in items]

    def delete_refs_of_user(self, user_id: str) -> int:
        refs = self.refs_of_user(user_id)
        self.table.batch_write(deletes=[keys.ref(r.milestone_id, user_id) for r in refs])
        return len(refs)

    def count_managed_events(self, user_id: str) -> int:
        """Events we keep on the user's calendar: their refs, minus those the user deleted (a COUNT query of
        GSI by_user_events: no items are returned)."""
        return self.table.query_count(IndexName="by_user_events", KeyConditionExpression="ref_user_pk = :u",
                                      FilterExpression="attribute_not_exists(removed_by_user_version)",
                                      ExpressionAttributeValues={":u": keys.events_pk(user_id)})
