"""All DynamoDB access. Nothing above this module touches boto3's DynamoDB API.

One table, keyed `pk`/`sk`, designed from the access patterns:

| pattern                               | key                                                  |
|---------------------------------------|------------------------------------------------------|
| connection by user                    | pk=USER#{user_id}, sk=CONNECTION                     |
| encrypted tokens by user              | pk=USER#{user_id}, sk=TOKENS (separate item: status  |
|                                       | reads never fetch ciphertext)                        |
| connections by org (sync icons)       | GSI by_org: org_pk=ORG#{org_id}, org_sk=USER#{id}    |
| connection by push channel (webhook)  | GSI by_channel: channel_pk=CHANNEL#{channel_id}      |
| connection by Cronofy account `sub`   | GSI by_sub: sub_pk=SUB#{sub}                         |
| single-use OAuth state                | pk=OAUTHSTATE#{nonce}, sk=STATE, ttl                 |

No request path scans.
"""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from calsync.models import Connection

_ser = TypeSerializer()
_de = TypeDeserializer()

CONNECTION_SK = "CONNECTION"
TOKENS_SK = "TOKENS"


class ConflictError(Exception):
    """A conditional write lost a race or found the item in another state."""


def _user_pk(user_id: str) -> str:
    return f"USER#{user_id}"


def _to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in values.items() if v is not None}


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


class Store:
    def __init__(self, dynamodb_client, table_name: str):
        self._db = dynamodb_client
        self._table = table_name

    # ---- connections -------------------------------------------------------------------------

    def _connection_item(self, conn: Connection) -> dict[str, Any]:
        data = conn.model_dump(mode="json", exclude_none=True)
        data.update(
            pk=_user_pk(conn.user_id),
            sk=CONNECTION_SK,
            org_pk=f"ORG#{conn.org_id}",
            org_sk=_user_pk(conn.user_id),
            sub_pk=f"SUB#{conn.cronofy_sub}",
        )
        if conn.channel_id:
            data["channel_pk"] = f"CHANNEL#{conn.channel_id}"
        return _to_item(data)

    @staticmethod
    def _connection_from(item: dict[str, Any]) -> Connection:
        values = _from_item(item)
        for key in ("pk", "sk", "org_pk", "org_sk", "sub_pk", "channel_pk"):
            values.pop(key, None)
        return Connection.model_validate(values)

    def get_connection(self, user_id: str) -> Connection | None:
        resp = self._db.get_item(
            TableName=self._table,
            Key=_to_item({"pk": _user_pk(user_id), "sk": CONNECTION_SK}),
            ConsistentRead=True,
        )
        item = resp.get("Item")
        return self._connection_from(item) if item else None

    def create_connection(self, conn: Connection, token_ciphertext: bytes, replaceable_states: set[str]) -> None:
        """Store a new connection and its tokens in one transaction.

        An existing connection is replaced only if its state is one of `replaceable_states`
        (e.g. a reconnect after `needs_reauth`); otherwise ConflictError.
        """
        states = sorted(replaceable_states)
        names = {f":s{i}": s for i, s in enumerate(states)}
        condition = "attribute_not_exists(pk)"
        if states:
            condition += f" OR #state IN ({', '.join(names)})"
        put_conn: dict[str, Any] = {
            "TableName": self._table,
            "Item": self._connection_item(conn),
            "ConditionExpression": condition,
        }
        if states:
            put_conn["ExpressionAttributeNames"] = {"#state": "state"}
            put_conn["ExpressionAttributeValues"] = _to_item(names)
        try:
            self._db.transact_write_items(
                TransactItems=[
                    {"Put": put_conn},
                    {"Put": {"TableName": self._table, "Item": self._tokens_item(conn.user_id, token_ciphertext)}},
                ]
            )
        except self._db.exceptions.TransactionCanceledException as error:
            raise ConflictError("a connection exists in a state that cannot be replaced") from error

    def save_connection(self, conn: Connection) -> Connection:
        """Write `conn` if nobody else wrote since it was read (optimistic concurrency on `revision`)."""
        expected = conn.revision
        updated = conn.model_copy(update={"revision": expected + 1})
        try:
            self._db.put_item(
                TableName=self._table,
                Item=self._connection_item(updated),
                ConditionExpression="#rev = :rev",
                ExpressionAttributeNames={"#rev": "revision"},
                ExpressionAttributeValues=_to_item({":rev": expected}),
            )
        except self._db.exceptions.ConditionalCheckFailedException as error:
            raise ConflictError(f"connection of {conn.user_id} changed concurrently") from error
        return updated

    def delete_connection(self, user_id: str) -> None:
        """Delete the connection and its tokens together (idempotent)."""
        pk = _user_pk(user_id)
        self._db.transact_write_items(
            TransactItems=[
                {"Delete": {"TableName": self._table, "Key": _to_item({"pk": pk, "sk": CONNECTION_SK})}},
                {"Delete": {"TableName": self._table, "Key": _to_item({"pk": pk, "sk": TOKENS_SK})}},
            ]
        )

    def connections_in_org(self, org_id: str) -> list[Connection]:
        found: list[Connection] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "by_org",
            "KeyConditionExpression": "org_pk = :org",
            "ExpressionAttributeValues": _to_item({":org": f"ORG#{org_id}"}),
        }
        while True:
            resp = self._db.query(**kwargs)
            found.extend(self._connection_from(item) for item in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return found
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def _single_by_index(self, index: str, attribute: str, value: str) -> Connection | None:
        resp = self._db.query(
            TableName=self._table,
            IndexName=index,
            KeyConditionExpression=f"{attribute} = :v",
            ExpressionAttributeValues=_to_item({":v": value}),
            Limit=1,
        )
        items = resp.get("Items", [])
        if not items:
            return None
        # Keys-only index, eventually consistent: read the base item for the truth.
        user_id = _from_item(items[0])["pk"].removeprefix("USER#")
        return self.get_connection(user_id)

    def connection_by_channel(self, channel_id: str) -> Connection | None:
        conn = self._single_by_index("by_channel", "channel_pk", f"CHANNEL#{channel_id}")
        return conn if conn and conn.channel_id == channel_id else None

    def connection_by_sub(self, sub: str) -> Connection | None:
        conn = self._single_by_index("by_sub", "sub_pk", f"SUB#{sub}")
        return conn if conn and conn.cronofy_sub == sub else None

    # ---- tokens --------------------------------------------------------------------------------

    def _tokens_item(self, user_id: str, ciphertext: bytes) -> dict[str, Any]:
        return _to_item({"pk": _user_pk(user_id), "sk": TOKENS_SK, "ciphertext": ciphertext})

    def save_tokens(self, user_id: str, ciphertext: bytes) -> None:
        self._db.put_item(TableName=self._table, Item=self._tokens_item(user_id, ciphertext))

    def get_tokens(self, user_id: str) -> bytes | None:
        resp = self._db.get_item(
            TableName=self._table,
            Key=_to_item({"pk": _user_pk(user_id), "sk": TOKENS_SK}),
            ConsistentRead=True,
        )
        item = resp.get("Item")
        return bytes(_from_item(item)["ciphertext"]) if item else None

    # ---- OAuth state ---------------------------------------------------------------------------

    def put_oauth_state(self, nonce: str, user_id: str, org_id: str, expires_at: int) -> None:
        self._db.put_item(
            TableName=self._table,
            Item=_to_item(
                {"pk": f"OAUTHSTATE#{nonce}", "sk": "STATE", "user_id": user_id, "org_id": org_id, "ttl": expires_at}
            ),
            ConditionExpression="attribute_not_exists(pk)",
        )

    def consume_oauth_state(self, nonce: str) -> dict[str, Any] | None:
        """Atomically delete and return the state record; None if it was never issued or already used."""
        try:
            resp = self._db.delete_item(
                TableName=self._table,
                Key=_to_item({"pk": f"OAUTHSTATE#{nonce}", "sk": "STATE"}),
                ConditionExpression="attribute_exists(pk)",
                ReturnValues="ALL_OLD",
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return None
        return _from_item(resp["Attributes"])
