"""DynamoDB access for Enterprise Connect (same table, its own keys; no scans):

| pattern                                   | key                                              |
|-------------------------------------------|--------------------------------------------------|
| the org's Enterprise Connect              | pk=ORG#{org_id}, sk=ENTERPRISE                   |
| its service account's encrypted tokens    | pk=ORG#{org_id}, sk=ENTERPRISE_TOKENS            |
| one member asked for (status, reason)     | pk=ORG#{org_id}, sk=ECMEMBER#{user_id}           |

The org item carries a `grant_id` (new at each authorization after an end): a member's callback
claims its member item only while the org item is `active` with the grant the member was asked
under, in one transaction, so a callback for an org that ended Enterprise Connect stores nothing.
"""

from __future__ import annotations

from typing import Any

from calsync.store import ConflictError, _from_item, _to_item

ORG_SK = "ENTERPRISE"
TOKENS_SK = "ENTERPRISE_TOKENS"
MEMBER_PREFIX = "ECMEMBER#"


def _org_pk(org_id: str) -> str:
    return f"ORG#{org_id}"


class EnterpriseStore:
    def __init__(self, dynamodb_client, table_name: str):
        self._db = dynamodb_client
        self._table = table_name

    # ---- the org -------------------------------------------------------------------------------

    def get_org(self, org_id: str) -> dict[str, Any] | None:
        resp = self._db.get_item(TableName=self._table, Key=_to_item({"pk": _org_pk(org_id), "sk": ORG_SK}),
                                 ConsistentRead=True)
        item = resp.get("Item")
        return _strip(_from_item(item)) if item else None

    def activate(self, org_id: str, record: dict[str, Any], ciphertext: bytes) -> None:
        """The org's Enterprise Connect and its service-account tokens, in one transaction."""
        self._db.transact_write_items(TransactItems=[
            {"Put": {"TableName": self._table,
                     "Item": _to_item({"pk": _org_pk(org_id), "sk": ORG_SK, **record})}},
            {"Put": {"TableName": self._table,
                     "Item": _to_item({"pk": _org_pk(org_id), "sk": TOKENS_SK, "ciphertext": ciphertext})}},
        ])

    def end(self, org_id: str, grant_id: str, ended_by: str, ended_at: str) -> None:
        """Active -> ended (only the grant that is active) and the tokens deleted, in one transaction."""
        try:
            self._db.transact_write_items(TransactItems=[
                {"Update": {
                    "TableName": self._table, "Key": _to_item({"pk": _org_pk(org_id), "sk": ORG_SK}),
                    "UpdateExpression": "SET #s = :ended, ended_by = :by, ended_at = :at",
                    "ConditionExpression": "#s = :active AND grant_id = :g",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": _to_item({":ended": "ended", ":active": "active", ":g": grant_id,
                                                           ":by": ended_by, ":at": ended_at})}},
                {"Delete": {"TableName": self._table, "Key": _to_item({"pk": _org_pk(org_id), "sk": TOKENS_SK})}},
            ])
        except self._db.exceptions.TransactionCanceledException as error:
            raise ConflictError("Enterprise Connect is not active with this grant") from error

    def get_tokens(self, org_id: str) -> bytes | None:
        resp = self._db.get_item(TableName=self._table, Key=_to_item({"pk": _org_pk(org_id), "sk": TOKENS_SK}),
                                 ConsistentRead=True)
        item = resp.get("Item")
        return bytes(_from_item(item)["ciphertext"]) if item else None

    def save_tokens(self, org_id: str, grant_id: str, ciphertext: bytes) -> None:
        """A refreshed service-account token, kept only while that grant is still active."""
        try:
            self._db.transact_write_items(TransactItems=[
                {"ConditionCheck": {
                    "TableName": self._table, "Key": _to_item({"pk": _org_pk(org_id), "sk": ORG_SK}),
                    "ConditionExpression": "#s = :active AND grant_id = :g",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": _to_item({":active": "active", ":g": grant_id})}},
                {"Put": {"TableName": self._table,
                         "Item": _to_item({"pk": _org_pk(org_id), "sk": TOKENS_SK, "ciphertext": ciphertext})}},
            ])
        except self._db.exceptions.TransactionCanceledException as error:
            raise ConflictError("Enterprise Connect ended meanwhile") from error

    # ---- members -------------------------------------------------------------------------------

    def _member_key(self, org_id: str, user_id: str) -> dict[str, Any]:
        return _to_item({"pk": _org_pk(org_id), "sk": f"{MEMBER_PREFIX}{user_id}"})

    def put_member(self, org_id: str, member: dict[str, Any]) -> None:
        self._db.put_item(TableName=self._table,
                          Item=_to_item({"pk": _org_pk(org_id), "sk": f"{MEMBER_PREFIX}{member['user_id']}",
                                         **member}))

    def get_member(self, org_id: str, user_id: str) -> dict[str, Any] | None:
        resp = self._db.get_item(TableName=self._table, Key=self._member_key(org_id, user_id), ConsistentRead=True)
        item = resp.get("Item")
        return _strip(_from_item(item)) if item else None

    def members(self, org_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": _to_item({":pk": _org_pk(org_id), ":prefix": MEMBER_PREFIX}),
            "ConsistentRead": True,
        }
        while True:
            resp = self._db.query(**kwargs)
            found.extend(_strip(_from_item(item)) for item in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return found
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def claim_member(self, org_id: str, user_id: str, grant_id: str, nonce: str, at: str) -> bool:
        """requested -> connecting, only with the nonce the member was asked with and while the org's
        Enterprise Connect is active under the same grant (single use; nothing changes otherwise)."""
        try:
            self._db.transact_write_items(TransactItems=[
                {"ConditionCheck": {
                    "TableName": self._table, "Key": _to_item({"pk": _org_pk(org_id), "sk": ORG_SK}),
                    "ConditionExpression": "#s = :active AND grant_id = :g",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": _to_item({":active": "active", ":g": grant_id})}},
                {"Update": {
                    "TableName": self._table, "Key": self._member_key(org_id, user_id),
                    "UpdateExpression": "SET #s = :connecting, updated_at = :at REMOVE nonce",
                    "ConditionExpression": "#s = :requested AND nonce = :n AND grant_id = :g",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": _to_item({":connecting": "connecting", ":requested": "requested",
                                                           ":n": nonce, ":g": grant_id, ":at": at})}},
            ])
        except self._db.exceptions.TransactionCanceledException:
            return False
        return True

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
        kwargs: dict[str, Any] = {"TableName": self._table, "Key": self._member_key(org_id, user_id),
                                  "UpdateExpression": expression.strip(), "ExpressionAttributeNames": names,
                                  "ConditionExpression": "attribute_exists(pk)"}
        if expect_status is not None:
            names["#status_expected"] = "status"
            values[":expected"] = expect_status
            kwargs["ConditionExpression"] += " AND #status_expected = :expected"
        if values:
            kwargs["ExpressionAttributeValues"] = _to_item(values)
        try:
            self._db.update_item(**kwargs)
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True


def _strip(values: dict[str, Any]) -> dict[str, Any]:
    values.pop("pk", None)
    values.pop("sk", None)
    return values
