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
| connections the reconciler is due to  | GSI by_due: due_pk=DUE, due_sk={next visit, UTC ISO} |
|   visit, most overdue first           |   (sparse: only connections that need visits)        |
| single-use OAuth state                | pk=OAUTHSTATE#{nonce}, sk=STATE, ttl                 |
| push notifications already accepted   | pk=NOTIFY#{channel}, sk={type}#{changes_since}, ttl; |
|   (replays) and the newest per channel|   sk=NEWEST                                          |
| the one user of a Cronofy account     | pk=ACCOUNT#{sub}, sk=OWNER (user_id, org_id)         |
| a user's calendar list (60 s cache)   | pk=USER#{user_id}, sk=CALENDARS, ttl                 |
| milestone mirror (newest version)     | pk=MILESTONE#{id}, sk=MIRROR                         |
| scheduled milestones of a user, by    | pk=MILESTONE#{id}, sk=SCHEDULED#{user}; GSI          |
|   start (backfill window)             |   by_assignee: assignee_pk=ASSIGNEE#{user},          |
|                                       |   assignee_sk={start UTC}#{milestone id}             |
| event written to a user's calendar    | pk=MILESTONE#{id}, sk=REF#{user}; GSI by_user_events |
|   (by milestone, and by user)         |   ref_user_pk=EVENTS#{user}, ref_user_sk={milestone} |
| backfill progress of a user           | pk=USER#{user_id}, sk=BACKFILL                       |
| busy periods of a user, one item per  | pk=USER#{user_id}, sk=BUSY#{Monday of the week}      |
|   week (start/end per event only)     |   (bounded items however busy the calendar)          |
| backfill chunk (milestone ids)        | pk=BACKFILL#{run_id}, sk=CHUNK#{n}, ttl              |

One query of a milestone's partition returns its mirror, its schedule index entries and every
event written for it, which is all milestone push needs to decide.

No request path scans.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from calsync.clock import iso

if TYPE_CHECKING:  # the models (pydantic) load when first needed: the webhook intake never needs them
    from calsync.models import BackfillProgress, Connection, EventRef

_ser = TypeSerializer()
_de = TypeDeserializer()

CONNECTION_SK = "CONNECTION"
TOKENS_SK = "TOKENS"
BACKFILL_SK = "BACKFILL"
BUSY_SK = "BUSY"  # the busy periods' bookkeeping (as_of) when no week holds any
BUSY_PREFIX = "BUSY#"
CALENDARS_SK = "CALENDARS"
ACCOUNT_SK = "OWNER"
MIRROR_SK = "MIRROR"
BATCH_GET_LIMIT = 100


DUE_PK = "DUE"


class ConflictError(Exception):
    """A conditional write lost a race or found the item in another state."""


class MilestoneOrgMismatch(ValueError):
    """A milestone message names a milestone id that belongs to another org."""


class AccountInUse(ConflictError):
    """The calendar account is already connected by another SolarNexus user."""


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
        due = conn.due_at()
        if due is not None:
            data.update(due_pk=DUE_PK, due_sk=iso(due))
        if conn.channel_id:
            data["channel_pk"] = f"CHANNEL#{conn.channel_id}"
        return _to_item(data)

    @staticmethod
    def _connection_from(item: dict[str, Any]) -> Connection:
        from calsync.models import Connection

        values = _from_item(item)
        for key in ("pk", "sk", "org_pk", "org_sk", "sub_pk", "channel_pk", "slot_pk", "due_pk", "due_sk"):
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
        # One calendar account, one SolarNexus user: the account's claim is taken in the same transaction.
        claim = {
            "TableName": self._table,
            "Item": _to_item({"pk": f"ACCOUNT#{conn.cronofy_sub}", "sk": ACCOUNT_SK, "user_id": conn.user_id,
                              "org_id": conn.org_id}),
            "ConditionExpression": "attribute_not_exists(pk) OR user_id = :me",
            "ExpressionAttributeValues": _to_item({":me": conn.user_id}),
        }
        try:
            self._db.transact_write_items(
                TransactItems=[
                    {"Put": put_conn},
                    {"Put": {"TableName": self._table, "Item": self._tokens_item(conn.user_id, token_ciphertext)}},
                    {"Put": claim},
                ]
            )
        except self._db.exceptions.TransactionCanceledException as error:
            reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
            if len(reasons) == 3 and reasons[2] == "ConditionalCheckFailed" and reasons[0] != "ConditionalCheckFailed":
                raise AccountInUse("this calendar account is connected by another user") from error
            raise ConflictError("a connection exists in a state that cannot be replaced") from error

    def account_owner(self, sub: str) -> str | None:
        """The user whose connection uses this Cronofy account (its claim, else the by_sub index for
        connections stored before claims existed)."""
        item = self._db.get_item(TableName=self._table, ConsistentRead=True,
                                 Key=_to_item({"pk": f"ACCOUNT#{sub}", "sk": ACCOUNT_SK})).get("Item")
        if item:
            return _from_item(item)["user_id"]
        conn = self.connection_by_sub(sub)
        return conn.user_id if conn else None

    def release_account(self, sub: str, user_id: str) -> None:
        """Drop this user's claim on an account (never another user's)."""
        try:
            self._db.delete_item(TableName=self._table, Key=_to_item({"pk": f"ACCOUNT#{sub}", "sk": ACCOUNT_SK}),
                                 ConditionExpression="user_id = :me",
                                 ExpressionAttributeValues=_to_item({":me": user_id}))
        except self._db.exceptions.ConditionalCheckFailedException:
            pass

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

    def update_connection(self, user_id: str, change, attempts: int = 3) -> Connection | None:
        """Read, change (`change(conn) -> conn`) and save a connection, again after a concurrent write;
        None when there is no connection or every attempt lost a race."""
        for _ in range(attempts):
            conn = self.get_connection(user_id)
            if conn is None:
                return None
            try:
                return self.save_connection(change(conn))
            except ConflictError:
                continue
        return None

    def delete_connection(self, user_id: str, connection_id: str | None = None, sub: str | None = None) -> None:
        """Delete the connection, its tokens, backfill progress and busy periods (idempotent), and with
        `sub` this user's claim on that calendar account. The busy weeks go first: a crash in between
        leaves the connection, and its cleanup is retried.

        With `connection_id`, only that connection: if another one replaced it meanwhile, nothing of it
        is deleted (but busy weeks, which it rebuilds) and ConflictError is raised."""
        pk = _user_pk(user_id)
        BusyStore(self._db, self._table).delete_user(user_id)
        items: list[dict[str, Any]] = [
            {"Delete": {"TableName": self._table, "Key": _to_item({"pk": pk, "sk": sk})}}
            for sk in (CONNECTION_SK, TOKENS_SK, BACKFILL_SK, BUSY_SK, CALENDARS_SK)
        ]
        if connection_id is not None:
            items[0]["Delete"].update(
                ConditionExpression="attribute_not_exists(pk) OR connection_id = :cid",
                ExpressionAttributeValues=_to_item({":cid": connection_id}))
        claim = None
        if sub is not None:
            claim = {"Delete": {"TableName": self._table, "Key": _to_item({"pk": f"ACCOUNT#{sub}", "sk": ACCOUNT_SK}),
                                "ConditionExpression": "attribute_not_exists(pk) OR user_id = :me",
                                "ExpressionAttributeValues": _to_item({":me": user_id})}}
        try:
            self._db.transact_write_items(TransactItems=items + ([claim] if claim else []))
        except self._db.exceptions.TransactionCanceledException as error:
            reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
            if claim and reasons and reasons[0] != "ConditionalCheckFailed":
                # Someone else's claim on the account (connections from before claims): keep it.
                self._db.transact_write_items(TransactItems=items)
                return
            raise ConflictError(f"the connection of {user_id} was replaced meanwhile") from error

    def delete_stray_tokens(self, user_id: str) -> None:
        """Tokens (and progress) left without a connection; never anything of a connection made meanwhile."""
        pk = _user_pk(user_id)
        try:
            self._db.transact_write_items(TransactItems=[
                {"ConditionCheck": {"TableName": self._table, "Key": _to_item({"pk": pk, "sk": CONNECTION_SK}),
                                    "ConditionExpression": "attribute_not_exists(pk)"}},
                *({"Delete": {"TableName": self._table, "Key": _to_item({"pk": pk, "sk": sk})}}
                  for sk in (TOKENS_SK, BACKFILL_SK, BUSY_SK, CALENDARS_SK)),
            ])
        except self._db.exceptions.TransactionCanceledException:
            return  # a connection exists again: its items are not stray
        BusyStore(self._db, self._table).delete_user(user_id)

    def connections_in_org(self, org_id: str) -> list[Connection]:
        found: list[Connection] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "by_org",
            "KeyConditionExpression": "org_pk = :org",
            "ExpressionAttributeValues": _to_item({":org": f"ORG#{org_id}"}),
        }
        for resp in _query_pages(self._db, kwargs):
            found.extend(self._connection_from(item) for item in resp.get("Items", []))
        return found

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

    def users_due(self, now: str, limit: int) -> list[str]:
        """Up to `limit` users whose reconciler visit is due at `now` (UTC ISO), most overdue first
        (GSI by_due, keys only). No fixed order: a visited user moves to the back by its next due time."""
        users: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "by_due",
            "KeyConditionExpression": "due_pk = :p AND due_sk <= :now",
            "ExpressionAttributeValues": _to_item({":p": DUE_PK, ":now": now}),
            "Limit": limit,
        }
        while len(users) < limit:
            resp = self._db.query(**kwargs)
            users.extend(_from_item(i)["pk"].removeprefix("USER#") for i in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                break
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
            kwargs["Limit"] = limit - len(users)
        return users[:limit]

    def due_backlog(self, now: str) -> tuple[int, str | None]:
        """(how many users are due at `now`, the oldest due time): the reconciler's backlog."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "by_due",
            "KeyConditionExpression": "due_pk = :p AND due_sk <= :now",
            "ExpressionAttributeValues": _to_item({":p": DUE_PK, ":now": now}),
            "Select": "COUNT",
        }
        count = 0
        for resp in _query_pages(self._db, kwargs):
            count += resp.get("Count", 0)
        if not count:
            return 0, None
        first = self._db.query(TableName=self._table, IndexName="by_due", Limit=1,
                               KeyConditionExpression="due_pk = :p",
                               ExpressionAttributeValues=_to_item({":p": DUE_PK}))
        items = first.get("Items", [])
        return count, (_from_item(items[0])["due_sk"] if items else None)

    def request_visit(self, user_id: str, at: str, checked_before: str) -> bool:
        """Bring a connected user's reconciler visit forward to `at` when its last full check is older
        than `checked_before` (the caller just refreshed the token: a visit before it expires needs no
        refresh of its own). A hint only: it does not bump `revision`, and a concurrent full write may
        drop it."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key=_to_item({"pk": _user_pk(user_id), "sk": CONNECTION_SK}),
                UpdateExpression="SET visit_requested_at = :at, due_sk = :at",
                ConditionExpression=("attribute_exists(due_pk) AND #state = :connected AND "
                                     "(attribute_not_exists(last_checked_at) OR last_checked_at < :before) AND "
                                     "due_sk > :at"),
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=_to_item({":at": at, ":before": checked_before,
                                                    ":connected": "connected"}),
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def channel_owner(self, channel_id: str) -> tuple[str, str] | None:
        """(user_id, org_id) of the connection whose push channel this is, without building a model
        (the webhook intake's one read path)."""
        resp = self._db.query(
            TableName=self._table, IndexName="by_channel", KeyConditionExpression="channel_pk = :v",
            ExpressionAttributeValues=_to_item({":v": f"CHANNEL#{channel_id}"}), Limit=1)
        if not resp.get("Items"):
            return None
        user_id = _from_item(resp["Items"][0])["pk"].removeprefix("USER#")
        item = self._db.get_item(
            TableName=self._table, Key=_to_item({"pk": _user_pk(user_id), "sk": CONNECTION_SK}),
            ProjectionExpression="org_id, channel_id").get("Item")
        if not item:
            return None
        values = _from_item(item)
        return (user_id, values["org_id"]) if values.get("channel_id") == channel_id else None

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

    # ---- calendar list cache -----------------------------------------------------------------------

    def put_calendars(self, user_id: str, key: str, calendars: list[dict], expires_at: int) -> None:
        """The account's calendars, briefly (the calendar picker is not a Cronofy call per click)."""
        import json

        self._db.put_item(TableName=self._table, Item=_to_item({
            "pk": _user_pk(user_id), "sk": CALENDARS_SK, "key": key, "calendars": json.dumps(calendars),
            "expires_at": expires_at, "ttl": expires_at}))

    def get_calendars(self, user_id: str, key: str, now: int) -> list[dict] | None:
        import json

        item = self._db.get_item(TableName=self._table, ConsistentRead=True,
                                 Key=_to_item({"pk": _user_pk(user_id), "sk": CALENDARS_SK})).get("Item")
        if not item:
            return None
        values = _from_item(item)
        if values.get("key") != key or int(values.get("expires_at", 0)) <= now:
            return None
        return json.loads(values["calendars"])

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

    # ---- push notifications (replays) --------------------------------------------------------------

    def accept_notification(self, channel_id: str, kind: str, changes_since: str | None, now: float,
                            window: float, stale_after: float, grace: float = 60, max_copies: int = 3) -> str:
        """"new", "duplicate" or "stale" for a verified push notification, before anything is queued.

        - The same (channel, type, changes_since) is accepted once per `window` seconds. A copy that
          arrives while the first is still queued is covered by that job's read (it reads later).
          Two genuine changes in the same second share a `changes_since`, so a copy arriving after the
          first job began reading, within `grace` seconds of the first, passes (at most `max_copies`).
        - "stale": `changes_since` more than `stale_after` seconds behind the newest accepted on the
          channel (Cronofy retries for a day; the reconciler covers anything missed).
        A duplicate costs one conditional write; nothing else is read."""
        pk, sk = f"NOTIFY#{channel_id}", f"{kind}#{changes_since or '-'}"
        expires = int(now + window)
        try:
            self._db.put_item(
                TableName=self._table,
                Item=_to_item({"pk": pk, "sk": sk, "accepted_at": int(now), "expires_at": expires, "ttl": expires,
                               "read_started": False, "copies": 0}),
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
                ExpressionAttributeValues=_to_item({":now": int(now)}),
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            try:
                self._db.update_item(
                    TableName=self._table, Key=_to_item({"pk": pk, "sk": sk}),
                    UpdateExpression="SET read_started = :f ADD copies :one",
                    ConditionExpression="read_started = :t AND accepted_at >= :since AND copies < :max",
                    ExpressionAttributeValues=_to_item({":f": False, ":t": True, ":one": 1,
                                                        ":since": int(now - grace), ":max": max_copies}),
                )
            except self._db.exceptions.ConditionalCheckFailedException:
                return "duplicate"
        if not changes_since:
            return "new"
        try:
            self._db.update_item(
                TableName=self._table, Key=_to_item({"pk": pk, "sk": "NEWEST"}),
                UpdateExpression="SET newest = :cs", ConditionExpression="attribute_not_exists(newest) OR newest < :cs",
                ExpressionAttributeValues=_to_item({":cs": changes_since}),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self._db.exceptions.ConditionalCheckFailedException as error:
            newest = _from_item(error.response.get("Item") or {}).get("newest")
            if newest is None:
                newest = _from_item(self._db.get_item(TableName=self._table, ConsistentRead=True,
                                                      Key=_to_item({"pk": pk, "sk": "NEWEST"})).get("Item") or {}
                                    ).get("newest")
            if newest and _seconds_between(changes_since, newest) > stale_after:
                return "stale"
        return "new"

    def notification_read_started(self, channel_id: str, kind: str, changes_since: str | None) -> None:
        """The processor is about to read what this notification announced: a copy arriving from now on
        may be a genuine later change (see accept_notification)."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key=_to_item({"pk": f"NOTIFY#{channel_id}", "sk": f"{kind}#{changes_since or '-'}"}),
                UpdateExpression="SET read_started = :t", ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues=_to_item({":t": True}))
        except self._db.exceptions.ConditionalCheckFailedException:
            pass

    def forget_notification(self, channel_id: str, kind: str, changes_since: str | None) -> None:
        """Undo accept_notification's marker (the message could not be queued: Cronofy's retry must pass)."""
        self._db.delete_item(TableName=self._table,
                             Key=_to_item({"pk": f"NOTIFY#{channel_id}", "sk": f"{kind}#{changes_since or '-'}"}))

    # ---- milestone mirror ----------------------------------------------------------------------

    def put_mirror_if_newer(self, org_id: str, milestone_id: str, version: int, body: str | None) -> bool:
        """Store a milestone version (body None = deleted) unless the mirror already has it or newer.

        A milestone belongs to the org that first sent it: a message from another org naming the same
        milestone id raises MilestoneOrgMismatch and changes nothing."""
        item = {"pk": f"MILESTONE#{milestone_id}", "sk": MIRROR_SK, "org_id": org_id, "version": version,
                "deleted": body is None, "body": body}
        try:
            self._db.put_item(
                TableName=self._table,
                Item=_to_item(item),
                ConditionExpression="attribute_not_exists(pk) OR (#v < :v AND org_id = :org)",
                ExpressionAttributeNames={"#v": "version"},
                ExpressionAttributeValues=_to_item({":v": version, ":org": org_id}),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self._db.exceptions.ConditionalCheckFailedException as error:
            old = _from_item(error.response.get("Item") or {})
            if not old:  # older SDKs/emulators do not return the item: read it
                old = self.mirrors([milestone_id]).get(milestone_id, {})
            if old.get("org_id") not in (None, org_id):
                raise MilestoneOrgMismatch(f"milestone {milestone_id} belongs to another org") from error
            return False
        return True

    def milestone_partition(self, milestone_id: str) -> tuple[dict | None, dict[str, str], dict[str, EventRef]]:
        """(mirror, {user: schedule sort key}, {user: event ref}) in one query."""
        mirror, scheduled, refs = None, {}, {}
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": _to_item({":pk": f"MILESTONE#{milestone_id}"}),
            "ConsistentRead": True,
        }
        for resp in _query_pages(self._db, kwargs):
            for raw in resp.get("Items", []):
                item = _from_item(raw)
                sk = item["sk"]
                if sk == MIRROR_SK:
                    mirror = item
                elif sk.startswith("SCHEDULED#"):
                    scheduled[item["user_id"]] = item["assignee_sk"]
                elif sk.startswith("REF#"):
                    refs[item["user_id"]] = _ref_from(item)
        return mirror, scheduled, refs

    def partitions_for_user(
        self, milestone_ids: list[str], user_id: str
    ) -> dict[str, tuple[dict | None, dict[str, str], dict[str, EventRef]]]:
        """Like milestone_partition, for one user's share of many milestones: BatchGetItem instead of a
        query per milestone (the backfill's read path)."""
        ids = list(dict.fromkeys(milestone_ids))
        found: dict[str, tuple[dict | None, dict[str, str], dict[str, EventRef]]] = {m: (None, {}, {}) for m in ids}
        keys = [
            _to_item({"pk": f"MILESTONE#{m}", "sk": sk})
            for m in ids
            for sk in (MIRROR_SK, f"SCHEDULED#{user_id}", f"REF#{user_id}")
        ]
        for i in range(0, len(keys), BATCH_GET_LIMIT):
            for item in self._batch_get(keys[i:i + BATCH_GET_LIMIT]):
                mirror, scheduled, refs = found[item["pk"].removeprefix("MILESTONE#")]
                if item["sk"] == MIRROR_SK:
                    found[item["pk"].removeprefix("MILESTONE#")] = (item, scheduled, refs)
                elif item["sk"].startswith("SCHEDULED#"):
                    scheduled[item["user_id"]] = item["assignee_sk"]
                else:
                    refs[item["user_id"]] = _ref_from(item)
        return found

    def mirrors(self, milestone_ids: list[str]) -> dict[str, dict]:
        """Newest mirror items by milestone id (BatchGetItem, 100 keys a request)."""
        found: dict[str, dict] = {}
        ids = list(dict.fromkeys(milestone_ids))
        for i in range(0, len(ids), BATCH_GET_LIMIT):
            keys = [_to_item({"pk": f"MILESTONE#{m}", "sk": MIRROR_SK}) for m in ids[i:i + BATCH_GET_LIMIT]]
            for item in self._batch_get(keys):
                found[item["pk"].removeprefix("MILESTONE#")] = item
        return found

    def _batch_get(self, keys: list[dict]) -> list[dict]:
        return _batch_get(self._db, self._table, keys)

    def set_schedule_index(self, milestone_id: str, add: dict[str, str], remove: list[str]) -> None:
        """Keep the by_assignee index entries of a milestone equal to its current schedule."""
        for user_id, sort_key in add.items():
            self._db.put_item(TableName=self._table, Item=_to_item({
                "pk": f"MILESTONE#{milestone_id}", "sk": f"SCHEDULED#{user_id}", "user_id": user_id,
                "assignee_pk": f"ASSIGNEE#{user_id}", "assignee_sk": sort_key}))
        for user_id in remove:
            self._db.delete_item(TableName=self._table,
                                 Key=_to_item({"pk": f"MILESTONE#{milestone_id}", "sk": f"SCHEDULED#{user_id}"}))

    def scheduled_for_user(self, user_id: str, since: str) -> list[str]:
        """Milestone ids scheduled for a user starting at or after `since` (UTC ISO)."""
        ids: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "by_assignee",
            "KeyConditionExpression": "assignee_pk = :u AND assignee_sk >= :since",
            "ExpressionAttributeValues": _to_item({":u": f"ASSIGNEE#{user_id}", ":since": since}),
        }
        for resp in _query_pages(self._db, kwargs):
            ids.extend(_from_item(i)["pk"].removeprefix("MILESTONE#") for i in resp.get("Items", []))
        return ids

    # ---- event refs ------------------------------------------------------------------------------

    def put_ref(self, ref: EventRef) -> bool:
        """Record a write; never moves a ref back to an older milestone version."""
        try:
            self._db.put_item(
                TableName=self._table, Item=self._ref_item(ref),
                ConditionExpression="attribute_not_exists(pk) OR #v <= :v",
                ExpressionAttributeNames={"#v": "version"},
                ExpressionAttributeValues=_to_item({":v": ref.version}),
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def get_ref(self, milestone_id: str, user_id: str) -> EventRef | None:
        resp = self._db.get_item(TableName=self._table, ConsistentRead=True,
                                 Key=_to_item({"pk": f"MILESTONE#{milestone_id}", "sk": f"REF#{user_id}"}))
        return _ref_from(_from_item(resp["Item"])) if "Item" in resp else None

    def put_refs(self, refs: list[EventRef]) -> None:
        """Record many writes, each conditional on its version. (A TransactWriteItems of 50 would be
        one request, but costs double write capacity and one moved ref would cancel all 50.)"""
        for ref in refs:
            self.put_ref(ref)

    def _ref_item(self, ref: EventRef) -> dict[str, Any]:
        data = ref.model_dump(mode="json", exclude_none=True)
        data.update(pk=f"MILESTONE#{ref.milestone_id}", sk=f"REF#{ref.user_id}",
                    ref_user_pk=f"EVENTS#{ref.user_id}", ref_user_sk=ref.milestone_id)
        return _to_item(data)

    def delete_ref(self, milestone_id: str, user_id: str, version: int | None = None) -> bool:
        """Forget a write; with `version`, only if no newer version was written meanwhile."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Key": _to_item({"pk": f"MILESTONE#{milestone_id}", "sk": f"REF#{user_id}"}),
        }
        if version is not None:
            kwargs.update(ConditionExpression="attribute_not_exists(pk) OR #v <= :v",
                          ExpressionAttributeNames={"#v": "version"},
                          ExpressionAttributeValues=_to_item({":v": version}))
        try:
            self._db.delete_item(**kwargs)
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def refs_of_user(self, user_id: str) -> list[EventRef]:
        refs: list[EventRef] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "by_user_events",
            "KeyConditionExpression": "ref_user_pk = :u",
            "ExpressionAttributeValues": _to_item({":u": f"EVENTS#{user_id}"}),
        }
        for resp in _query_pages(self._db, kwargs):
            refs.extend(_ref_from(_from_item(i)) for i in resp.get("Items", []))
        return refs

    def delete_refs_of_user(self, user_id: str) -> int:
        refs = self.refs_of_user(user_id)
        keys = [{"pk": f"MILESTONE#{r.milestone_id}", "sk": f"REF#{user_id}"} for r in refs]
        _batch_write(self._db, self._table, [{"DeleteRequest": {"Key": _to_item(k)}} for k in keys])
        return len(refs)

    # ---- connections in bulk -----------------------------------------------------------------------

    def connections(self, user_ids: list[str]) -> dict[str, Connection]:
        ids = list(dict.fromkeys(user_ids))
        found: dict[str, Connection] = {}
        for i in range(0, len(ids), BATCH_GET_LIMIT):
            keys = [_to_item({"pk": _user_pk(u), "sk": CONNECTION_SK}) for u in ids[i:i + BATCH_GET_LIMIT]]
            for item in self._batch_get(keys):
                conn = self._connection_from(_to_item(item))
                found[conn.user_id] = conn
        return found

    # ---- crew availability and sync health (reads only) --------------------------------------------

    def assigned_milestone_ids(self, user_id: str, start_from: str, start_before: str) -> list[str]:
        """Milestones scheduled for a user that start in [start_from, start_before) (UTC ISO), by start;
        one query of GSI by_assignee (keys only) per 1 MB."""
        ids: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "by_assignee",
            # sort keys are "{start}#{milestone}": "{start_before}" sorts before any key starting then
            "KeyConditionExpression": "assignee_pk = :u AND assignee_sk BETWEEN :a AND :b",
            "ExpressionAttributeValues": _to_item({":u": f"ASSIGNEE#{user_id}", ":a": start_from,
                                                   ":b": start_before}),
        }
        for resp in _query_pages(self._db, kwargs):
            ids.extend(_from_item(i)["pk"].removeprefix("MILESTONE#") for i in resp.get("Items", []))
        return ids

    def backfills(self, user_ids: list[str]) -> dict[str, dict]:
        """Backfill progress items by user id (BatchGetItem, 100 keys a request)."""
        ids = list(dict.fromkeys(user_ids))
        found: dict[str, dict] = {}
        for i in range(0, len(ids), BATCH_GET_LIMIT):
            keys = [_to_item({"pk": _user_pk(u), "sk": BACKFILL_SK}) for u in ids[i:i + BATCH_GET_LIMIT]]
            for item in self._batch_get(keys):
                found[item["pk"].removeprefix("USER#")] = item
        return found

    def count_managed_events(self, user_id: str) -> int:
        """Events we keep on the user's calendar: their refs, minus those the user deleted (a COUNT query of
        GSI by_user_events: no items are returned)."""
        count = 0
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "by_user_events",
            "KeyConditionExpression": "ref_user_pk = :u",
            "FilterExpression": "attribute_not_exists(removed_by_user_version)",
            "ExpressionAttributeValues": _to_item({":u": f"EVENTS#{user_id}"}),
            "Select": "COUNT",
        }
        for resp in _query_pages(self._db, kwargs):
            count += resp.get("Count", 0)
        return count

    # ---- backfill ----------------------------------------------------------------------------------

    def put_backfill(self, user_id: str, run_id: str, progress: BackfillProgress, error: str | None = None,
                     started_at: float | None = None) -> None:
        self._db.put_item(TableName=self._table, Item=_to_item({
            "pk": _user_pk(user_id), "sk": BACKFILL_SK, "run_id": run_id, "error": error,
            "started_at": None if started_at is None else Decimal(f"{started_at:.3f}"), **progress.model_dump()}))

    def add_backfill_done(self, user_id: str, run_id: str, count: int) -> None:
        """Count finished milestones of the current run (a stale run's chunks count nothing)."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key=_to_item({"pk": _user_pk(user_id), "sk": BACKFILL_SK}),
                UpdateExpression="ADD done :n",
                ConditionExpression="run_id = :run",
                ExpressionAttributeValues=_to_item({":n": count, ":run": run_id}),
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            pass

    def get_backfill(self, user_id: str) -> dict | None:
        resp = self._db.get_item(TableName=self._table,
                                 Key=_to_item({"pk": _user_pk(user_id), "sk": BACKFILL_SK}), ConsistentRead=True)
        return _from_item(resp["Item"]) if "Item" in resp else None

    def put_chunks(self, run_id: str, chunks: list[list[str]], expires_at: int) -> None:
        for n, ids in enumerate(chunks):
            self._db.put_item(TableName=self._table, Item=_to_item({
                "pk": f"BACKFILL#{run_id}", "sk": f"CHUNK#{n:05d}", "milestone_ids": ids, "ttl": expires_at}))

    def get_chunk(self, run_id: str, n: int) -> list[str]:
        resp = self._db.get_item(TableName=self._table,
                                 Key=_to_item({"pk": f"BACKFILL#{run_id}", "sk": f"CHUNK#{n:05d}"}),
                                 ConsistentRead=True)
        if "Item" not in resp:
            raise LookupError(f"backfill chunk {run_id}/{n} not found")
        return list(_from_item(resp["Item"])["milestone_ids"])


def _seconds_between(earlier: str, later: str) -> float:
    """later - earlier in seconds for two wire times; 0 when either is not a time."""
    from calsync.clock import parse_utc

    try:
        return (parse_utc(later) - parse_utc(earlier)).total_seconds()
    except (ValueError, TypeError):
        return 0.0


def _ref_from(item: dict[str, Any]) -> EventRef:
    from calsync.models import EventRef

    return EventRef.model_validate({k: v for k, v in item.items()
                                    if k not in ("pk", "sk", "ref_user_pk", "ref_user_sk")})


class BusyStore:
    """Busy periods per user: one item per week (`sk=BUSY#{Monday}`), holding `periods`, a map from a
    hash of the event's id to "start/end" and nothing else of the event. An event is kept in every
    week it overlaps, so a read of a range needs only that range's weeks. Items stay small however
    busy a calendar is (a week of ~6,000 events is ~350 KB; a whole calendar in one item was not
    bounded), and expire (TTL) two weeks after their week ends."""

    def __init__(self, dynamodb_client, table_name: str):
        self._db = dynamodb_client
        self._table = table_name

    def weeks_of_user(self, user_id: str) -> dict[str, dict]:
        """Every stored week of a user: {week (Monday, ISO date): item} (one query, paged)."""
        found: dict[str, dict] = {}
        kwargs: dict[str, Any] = {
            "TableName": self._table, "ConsistentRead": True,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :busy)",
            "ExpressionAttributeValues": _to_item({":pk": _user_pk(user_id), ":busy": BUSY_PREFIX}),
        }
        for resp in _query_pages(self._db, kwargs):
            for raw in resp.get("Items", []):
                item = _from_item(raw)
                found[item["sk"].removeprefix(BUSY_PREFIX)] = item
        return found

    def write_weeks(self, user_id: str, org_id: str, weeks: dict[str, dict[str, str]], updated_at: str,
                    expires_at: dict[str, int]) -> None:
        """Store these weeks' periods (an empty map deletes the week), 25 items a request."""
        requests: list[dict] = []
        for week, periods in weeks.items():
            key = {"pk": _user_pk(user_id), "sk": f"{BUSY_PREFIX}{week}"}
            if periods:
                requests.append({"PutRequest": {"Item": _to_item({
                    **key, "org_id": org_id, "updated_at": updated_at, "periods": periods,
                    "ttl": expires_at[week]})}})
            else:
                requests.append({"DeleteRequest": {"Key": _to_item(key)}})
        _batch_write(self._db, self._table, requests)

    def touch(self, user_id: str, org_id: str, updated_at: str) -> None:
        """Record a successful refresh that changed nothing (the `as_of` of a user with no busy time)."""
        self._db.put_item(TableName=self._table, Item=_to_item({
            "pk": _user_pk(user_id), "sk": BUSY_SK, "org_id": org_id, "updated_at": updated_at}))

    def get_many(self, user_ids: list[str], weeks: list[str]) -> dict[str, dict]:
        """{user: {"org_id", "updated_at", "periods": ["start/end", ...]}} for these weeks, from
        BatchGetItem (100 keys a request: ceil(users x (weeks + 1) / 100) requests)."""
        ids = list(dict.fromkeys(user_ids))
        keys = [_to_item({"pk": _user_pk(u), "sk": sk}) for u in ids
                for sk in [BUSY_SK, *(f"{BUSY_PREFIX}{w}" for w in weeks)]]
        found: dict[str, dict] = {}
        for i in range(0, len(keys), BATCH_GET_LIMIT):
            for item in _batch_get(self._db, self._table, keys[i:i + BATCH_GET_LIMIT]):
                user = item["pk"].removeprefix("USER#")
                entry = found.setdefault(user, {"org_id": item.get("org_id"), "updated_at": None, "periods": []})
                if item.get("updated_at") and (entry["updated_at"] is None or item["updated_at"] > entry["updated_at"]):
                    entry["updated_at"] = item["updated_at"]
                entry["periods"].extend((item.get("periods") or {}).values())
        return found

    def delete_user(self, user_id: str) -> None:
        keys = [{"pk": _user_pk(user_id), "sk": f"{BUSY_PREFIX}{w}"} for w in self.weeks_of_user(user_id)]
        keys.append({"pk": _user_pk(user_id), "sk": BUSY_SK})
        _batch_write(self._db, self._table, [{"DeleteRequest": {"Key": _to_item(k)}} for k in keys])


def _query_pages(db, kwargs: dict[str, Any]):
    """Every page of a Query (following LastEvaluatedKey); `kwargs` are the Query's arguments."""
    kwargs = dict(kwargs)
    while True:
        resp = db.query(**kwargs)
        yield resp
        if "LastEvaluatedKey" not in resp:
            return
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def _batch_get(db, table: str, keys: list[dict]) -> list[dict]:
    items: list[dict] = []
    request = {table: {"Keys": keys, "ConsistentRead": True}}
    while request:
        resp = db.batch_get_item(RequestItems=request)
        items.extend(_from_item(i) for i in resp.get("Responses", {}).get(table, []))
        request = resp.get("UnprocessedKeys") or {}
    return items


def _batch_write(db, table: str, requests: list[dict]) -> None:
    for i in range(0, len(requests), 25):
        pending = {table: requests[i:i + 25]}
        while pending:
            pending = db.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
