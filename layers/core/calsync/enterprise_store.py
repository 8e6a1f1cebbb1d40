"""DynamoDB access for Enterprise Connect (same table, its own keys; no scans):

| pattern                                   | key                                              |
|-------------------------------------------|--------------------------------------------------|
| the org's Enterprise Connect              | pk=ORG#{org_id}, sk=ENTERPRISE                   |
| its service account's encrypted tokens    | pk=ORG#{org_id}, sk=ENTERPRISE_TOKENS            |
| one member asked for (status, reason)     | pk=ORG#{org_id}, sk=ECMEMBER#{user_id}           |

The org item carries a `grant_id` (new at each authorization after an end): a member's callback
claims its member item only while the org item is `active` with the grant the member was asked
under, in one transaction, so a callback for an org that ended Enterprise Connect stores nothing.
Keys come from calsync.keys, reads and conditional writes go through calsync.dynamo as the core
store's do.
"""

from __future__ import annotations

from typing import Any

from calsync import keys
from calsync.dynamo import Repository, to_item, without_keys


def _active_under(org_id: str, grant_id: str) -> dict[str, Any]:
    """A transaction's check that the org's Enterprise Connect is active under `grant_id`."""
    return {"ConditionCheck": {
        "Key": to_item(keys.enterprise_org(org_id)), "ConditionExpression": "#s = :active AND grant_id = :g",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": to_item({":active": "active", ":g": grant_id})}}


def _tokens_put(org_id: str, ciphertext: bytes) -> dict[str, Any]:
    return {"Put": {"Item": to_item({**keys.enterprise_tokens(org_id), "ciphertext": ciphertext})}}


class EnterpriseStore(Repository):
    # ---- the org -------------------------------------------------------------------------------

    def get_org(self, org_id: str) -> dict[str, Any] | None:
        values = self.table.get(keys.enterprise_org(org_id))
        return without_keys(values) if values else None

    def activate(self, org_id: str, record: dict[str, Any], ciphertext: bytes) -> None:
        """The org's Enterprise Connect and its service-account tokens, in one transaction."""
        self.table.transact_or_conflict([
            {"Put": {"Item": to_item({**keys.enterprise_org(org_id), **record})}},
            _tokens_put(org_id, ciphertext),
        ], "Enterprise Connect changed meanwhile")

    def end(self, org_id: str, grant_id: str, ended_by: str, ended_at: str) -> None:
        """Active -> ended (only the grant that is active) and the tokens deleted, in one transaction."""
        self.table.transact_or_conflict([
            {"Update": {
                "Key": to_item(keys.enterprise_org(org_id)),
                "UpdateExpression": "SET #s = :ended, ended_by = :by, ended_at = :at",
                "ConditionExpression": "#s = :active AND grant_id = :g",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": to_item({":ended": "ended", ":active": "active", ":g": grant_id,
                                                      ":by": ended_by, ":at": ended_at})}},
            {"Delete": {"Key": to_item(keys.enterprise_tokens(org_id))}},
        ], "Enterprise Connect is not active with this grant")

    def get_tokens(self, org_id: str) -> bytes | None:
        values = self.table.get(keys.enterprise_tokens(org_id))
        return bytes(values["ciphertext"]) if values else None

    def save_tokens(self, org_id: str, grant_id: str, ciphertext: bytes) -> None:
        """A refreshed service-account token, kept only while that grant is still active."""
        self.table.transact_or_conflict([_active_under(org_id, grant_id), _tokens_put(org_id, ciphertext)],
                                        "Enterprise Connect ended meanwhile")

    # ---- members -------------------------------------------------------------------------------

    def put_member(self, org_id: str, member: dict[str, Any]) -> None:
        self.table.put({**keys.enterprise_member(org_id, member["user_id"]), **member})

    def get_member(self, org_id: str, user_id: str) -> dict[str, Any] | None:
        values = self.table.get(keys.enterprise_member(org_id, user_id))
        return without_keys(values) if values else None

    def members(self, org_id: str) -> list[dict[str, Any]]:
        items = self.table.query_items(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)", ConsistentRead=True,
            ExpressionAttributeValues={":pk": keys.org_pk(org_id), ":prefix": keys.ENTERPRISE_MEMBER})
        return [without_keys(item) for item in items]

    def claim_member(self, org_id: str, user_id: str, grant_id: str, nonce: str, at: str) -> bool:
        """requested -> connecting, only with the nonce the member was asked with and while the org's
        Enterprise Connect is active under the same grant (single use; nothing changes otherwise)."""
        return self.table.transact([
            _active_under(org_id, grant_id),
            {"Update": {
                "Key": to_item(keys.enterprise_member(org_id, user_id)),
                "UpdateExpression": "SET #s = :connecting, updated_at = :at REMOVE nonce",
                "ConditionExpression": "#s = :requested AND nonce = :n AND grant_id = :g",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": to_item({":connecting": "connecting", ":requested": "requested",
                                                      ":n": nonce, ":g": grant_id, ":at": at})}},
        ]) is None

    def update_member(self, org_id: str, user_id: str, expect_status: str | None = None, **fields: Any) -> bool:
        """Set fields (None removes); with `expect_status`, only from that status."""
        sets = {k: v for k, v in fields.items() if v is not None}
        removes = [k for k, v in fields.items() if v is None]
        names = {f"#f{i}": k for i, k in enumerate([*sets, *removes])}
        by_name = {v: k for k, v in names.items()}
        values = {f":v{i}": v for i, v in enumerate(sets.values())}
        expression = "SET " + ", ".join(f"{by_name[k]} = :v{i}" for i, k in enumerate(sets)) if sets else ""
        if removes:
            expression += " REMOVE " + ", ".join(by_name[k] for k in removes)
        condition = "attribute_exists(pk)"
        if expect_status is not None:
            names["#status_expected"] = "status"
            values[":expected"] = expect_status
            condition += " AND #status_expected = :expected"
        extra: dict[str, Any] = {"ExpressionAttributeValues": to_item(values)} if values else {}
        return self.table.write_if(
            "update_item", Key=to_item(keys.enterprise_member(org_id, user_id)), UpdateExpression=expression.strip(),
            ExpressionAttributeNames=names, ConditionExpression=condition, **extra) is not None
