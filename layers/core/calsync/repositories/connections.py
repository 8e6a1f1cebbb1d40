"""A user's connection and the items that go with it: its encrypted tokens (a separate item: status
reads never fetch ciphertext), the claim on its calendar account, the calendar list cache, and the
by_org, by_channel, by_sub and by_due index entries carried on the connection item.

Every change of a connection is optimistic: `save_connection` writes only over the revision it read,
and `update_connection` reads, changes and saves again after a lost race.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from calsync import keys
from calsync.clock import iso
from calsync.dynamo import Repository, retry_on_conflict, to_item, without_keys
from calsync.errors import AccountInUse, ConflictError
from calsync.repositories.busy import BusyStore

if TYPE_CHECKING:  # the models (pydantic) load when first needed: the webhook intake never needs them
    from calsync.models import Connection

# Index keys carried on the connection item (none of them is a field of the model).
_INDEX_ATTRIBUTES = ("org_pk", "org_sk", "sub_pk", "channel_pk", "slot_pk", "due_pk", "due_sk")


class ChannelOwner(NamedTuple):
    """Whose push channel it is."""

    user_id: str
    org_id: str


class DueBacklog(NamedTuple):
    """The reconciler's backlog: how many users are due, and since when the oldest is (`users`, not
    `count`, which would shadow tuple.count)."""

    users: int
    oldest: str | None


def connection_values(conn: Connection) -> dict[str, Any]:
    """The connection item: the model's fields, its key and its index entries."""
    data = conn.model_dump(mode="json", exclude_none=True)
    data.update(keys.connection(conn.user_id), org_pk=keys.org_pk(conn.org_id), org_sk=keys.user_pk(conn.user_id),
                sub_pk=keys.sub_pk(conn.cronofy_sub))
    due = conn.due_at()
    if due is not None:
        data.update(due_pk=keys.DUE_PK, due_sk=iso(due))
    if conn.channel_id:
        data["channel_pk"] = keys.channel_pk(conn.channel_id)
    return data


def connection_from(values: dict[str, Any]) -> Connection:
    from calsync.models import Connection

    return Connection.model_validate(without_keys(values, *_INDEX_ATTRIBUTES))


class ConnectionRepository(Repository):
    # ---- one connection ------------------------------------------------------------------------

    def get_connection(self, user_id: str) -> Connection | None:
        values = self.table.get(keys.connection(user_id))
        return connection_from(values) if values else None

    def create_connection(self, conn: Connection, token_ciphertext: bytes, replaceable_states: set[str],
                          replace_only_connected_by: str | None = None) -> None:
        """Store a new connection and its tokens in one transaction.

        An existing connection is replaced only if its state is one of `replaceable_states` (e.g. a
        reconnect after `needs_reauth`), it is of the same org (never across orgs), and, with
        `replace_only_connected_by`, it was made that way (an admin's Enterprise Connect never replaces a
        member's own connection); otherwise ConflictError.
        """
        states = sorted(replaceable_states)
        names: dict[str, Any] = {f":s{i}": s for i, s in enumerate(states)}
        put_conn: dict[str, Any] = {"Item": to_item(connection_values(conn)),
                                    "ConditionExpression": "attribute_not_exists(pk)"}
        if states:
            replace = f"#state IN ({', '.join(names)}) AND org_id = :org"
            names[":org"] = conn.org_id
            if replace_only_connected_by is not None:
                replace += " AND connected_by = :by"
                names[":by"] = replace_only_connected_by
            put_conn["ConditionExpression"] += f" OR ({replace})"
            put_conn["ExpressionAttributeNames"] = {"#state": "state"}
            put_conn["ExpressionAttributeValues"] = to_item(names)
        # One calendar account, one SolarNexus user: the account's claim is taken in the same transaction.
        claim = {"Item": to_item({**keys.account_claim(conn.cronofy_sub), "user_id": conn.user_id,
                                  "org_id": conn.org_id}),
                 "ConditionExpression": "attribute_not_exists(pk) OR user_id = :me",
                 "ExpressionAttributeValues": to_item({":me": conn.user_id})}
        reasons = self.table.transact([
            {"Put": put_conn},
            {"Put": {"Item": to_item(_tokens_values(conn.user_id, token_ciphertext))}},
            {"Put": claim},
        ])
        if reasons is None:
            return
        if len(reasons) == 3 and reasons[2] == "ConditionalCheckFailed" and reasons[0] != "ConditionalCheckFailed":
            raise AccountInUse("this calendar account is connected by another user")
        raise ConflictError("a connection exists in a state that cannot be replaced")

    def save_connection(self, conn: Connection) -> Connection:
        """Write `conn` if nobody else wrote since it was read (optimistic concurrency on `revision`)."""
        expected = conn.revision
        updated = conn.model_copy(update={"revision": expected + 1})
        written = self.table.write_if(
            "put_item", Item=to_item(connection_values(updated)), ConditionExpression="#rev = :rev",
            ExpressionAttributeNames={"#rev": "revision"}, ExpressionAttributeValues=to_item({":rev": expected}))
        if written is None:
            raise ConflictError(f"connection of {conn.user_id} changed concurrently")
        return updated

    def update_connection(self, user_id: str, change: Callable[[Connection], Connection | None],
                          attempts: int = 3) -> Connection | None:
        """Read, change (`change(conn) -> conn`) and save a connection, again after a concurrent write;
        None when there is no connection or every attempt lost a race."""
        return retry_on_conflict(lambda: self.get_connection(user_id), change, self.save_connection, attempts)

    def delete_connection(self, user_id: str, connection_id: str | None = None, sub: str | None = None) -> None:
        """Delete the connection, its tokens, backfill progress and busy periods (idempotent), and with
        `sub` this user's claim on that calendar account. The busy weeks go first: a crash in between
        leaves the connection, and its cleanup is retried.

        With `connection_id`, only that connection: if another one replaced it meanwhile, nothing of it
        is deleted (but busy weeks, which it rebuilds) and ConflictError is raised."""
        BusyStore(self.table.client, self.table.name).delete_user(user_id)
        items: list[dict[str, Any]] = [{"Delete": {"Key": to_item(keys.user_item(user_id, sk))}}
                                       for sk in keys.CONNECTION_ITEMS]
        if connection_id is not None:
            items[0]["Delete"].update(ConditionExpression="attribute_not_exists(pk) OR connection_id = :cid",
                                      ExpressionAttributeValues=to_item({":cid": connection_id}))
        claim = [] if sub is None else [{"Delete": {
            "Key": to_item(keys.account_claim(sub)), "ConditionExpression": "attribute_not_exists(pk) OR user_id = :me",
            "ExpressionAttributeValues": to_item({":me": user_id})}}]
        reasons = self.table.transact(items + claim)
        if reasons is None:
            return
        if claim and reasons and reasons[0] != "ConditionalCheckFailed":
            # Someone else's claim on the account (connections from before claims): keep it.
            self.table.transact_or_conflict(items, f"the connection of {user_id} was replaced meanwhile")
            return
        raise ConflictError(f"the connection of {user_id} was replaced meanwhile")

    def delete_stray_tokens(self, user_id: str) -> None:
        """Tokens (and progress) left without a connection; never anything of a connection made meanwhile."""
        reasons = self.table.transact([
            {"ConditionCheck": {"Key": to_item(keys.connection(user_id)),
                                "ConditionExpression": "attribute_not_exists(pk)"}},
            *({"Delete": {"Key": to_item(keys.user_item(user_id, sk))}} for sk in keys.CONNECTION_ITEMS[1:]),
        ])
        if reasons is not None:
            return  # a connection exists again: its items are not stray
        BusyStore(self.table.client, self.table.name).delete_user(user_id)

    # ---- the calendar account's one user -------------------------------------------------------

    def account_owner(self, sub: str) -> str | None:
        """The user whose connection uses this Cronofy account (its claim, else the by_sub index for
        connections stored before claims existed)."""
        claim = self.table.get(keys.account_claim(sub))
        if claim:
            return claim["user_id"]
        conn = self.connection_by_sub(sub)
        return conn.user_id if conn else None

    def release_account(self, sub: str, user_id: str) -> None:
        """Drop this user's claim on an account (never another user's)."""
        self.table.write_if("delete_item", Key=to_item(keys.account_claim(sub)), ConditionExpression="user_id = :me",
                            ExpressionAttributeValues=to_item({":me": user_id}))

    # ---- connections by index ------------------------------------------------------------------

    def connections(self, user_ids: list[str]) -> dict[str, Connection]:
        """Connections by user id (BatchGetItem, 100 keys a request)."""
        found = self.table.batch_get([keys.connection(u) for u in dict.fromkeys(user_ids)])
        return {conn.user_id: conn for conn in map(connection_from, found)}

    def connections_in_org(self, org_id: str) -> list[Connection]:
        items = self.table.query_items(IndexName="by_org", KeyConditionExpression="org_pk = :org",
                                       ExpressionAttributeValues={":org": keys.org_pk(org_id)})
        return [connection_from(item) for item in items]

    def _single_by_index(self, index: str, attribute: str, value: str) -> Connection | None:
        entry = self.table.first(IndexName=index, KeyConditionExpression=f"{attribute} = :v",
                                 ExpressionAttributeValues={":v": value})
        # Keys-only index, eventually consistent: read the base item for the truth.
        return self.get_connection(keys.user_of(entry["pk"])) if entry else None

    def connection_by_channel(self, channel_id: str) -> Connection | None:
        conn = self._single_by_index("by_channel", "channel_pk", keys.channel_pk(channel_id))
        return conn if conn and conn.channel_id == channel_id else None

    def connection_by_sub(self, sub: str) -> Connection | None:
        conn = self._single_by_index("by_sub", "sub_pk", keys.sub_pk(sub))
        return conn if conn and conn.cronofy_sub == sub else None

    def channel_owner(self, channel_id: str) -> ChannelOwner | None:
        """(user_id, org_id) of the connection whose push channel this is, without building a model
        (the webhook intake's one read path)."""
        entry = self.table.first(IndexName="by_channel", KeyConditionExpression="channel_pk = :v",
                                 ExpressionAttributeValues={":v": keys.channel_pk(channel_id)})
        if entry is None:
            return None
        user_id = keys.user_of(entry["pk"])
        values = self.table.get(keys.connection(user_id), consistent=False, ProjectionExpression="org_id, channel_id")
        if not values:
            return None
        return ChannelOwner(user_id, values["org_id"]) if values.get("channel_id") == channel_id else None

    # ---- the reconciler's visits (GSI by_due) ----------------------------------------------------

    def users_due(self, now: str, limit: int) -> list[str]:
        """Up to `limit` users whose reconciler visit is due at `now` (UTC ISO), most overdue first
        (GSI by_due, keys only). No fixed order: a visited user moves to the back by its next due time."""
        return [user_id for user_id, _ in self.due_times(now, limit)]

    def due_times(self, now: str, limit: int) -> list[tuple[str, str]]:
        """`users_due` with when each became due (UTC ISO): the index's sort key, no extra read."""
        items = self.table.query_items(max_items=limit, IndexName="by_due",
                                       KeyConditionExpression="due_pk = :p AND due_sk <= :now",
                                       ExpressionAttributeValues={":p": keys.DUE_PK, ":now": now})
        return [(keys.user_of(item["pk"]), item["due_sk"]) for item in items][:limit]

    def due_backlog(self, now: str) -> DueBacklog:
        """(how many users are due at `now`, the oldest due time): the reconciler's backlog."""
        count = self.table.query_count(IndexName="by_due", KeyConditionExpression="due_pk = :p AND due_sk <= :now",
                                       ExpressionAttributeValues={":p": keys.DUE_PK, ":now": now})
        if not count:
            return DueBacklog(0, None)
        first = self.table.first(IndexName="by_due", KeyConditionExpression="due_pk = :p",
                                 ExpressionAttributeValues={":p": keys.DUE_PK})
        return DueBacklog(count, first["due_sk"] if first else None)

    def request_visit(self, user_id: str, at: str, checked_before: str, more_pages_than: int = 0) -> bool:
        """Bring a connected user's reconciler visit forward to `at` when its last full check is older
        than `checked_before` and its last read of everything took more than `more_pages_than` pages (the
        caller just refreshed the token: a visit before it expires needs no refresh of its own). A hint
        only: it does not bump `revision`, and a concurrent full write may drop it."""
        return self.table.write_if(
            "update_item", Key=to_item(keys.connection(user_id)),
            UpdateExpression="SET visit_requested_at = :at, due_sk = :at",
            ConditionExpression=("attribute_exists(due_pk) AND #state = :connected AND "
                                 "(attribute_not_exists(last_checked_at) OR last_checked_at < :before) AND "
                                 "full_read_pages > :pages AND due_sk > :at"),
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues=to_item({":at": at, ":before": checked_before, ":connected": "connected",
                                               ":pages": more_pages_than}),
        ) is not None

    # ---- tokens --------------------------------------------------------------------------------

    def save_tokens(self, user_id: str, ciphertext: bytes) -> None:
        self.table.put(_tokens_values(user_id, ciphertext))

    def get_tokens(self, user_id: str) -> bytes | None:
        values = self.table.get(keys.tokens(user_id))
        return bytes(values["ciphertext"]) if values else None

    # ---- calendar list cache -------------------------------------------------------------------

    def put_calendars(self, user_id: str, key: str, calendars: list[dict], expires_at: int) -> None:
        """The account's calendars, briefly (the calendar picker is not a Cronofy call per click)."""
        self.table.put({**keys.calendars(user_id), "key": key, "calendars": json.dumps(calendars),
                        "expires_at": expires_at, "ttl": expires_at})

    def get_calendars(self, user_id: str, key: str, now: int) -> list[dict] | None:
        values = self.table.get(keys.calendars(user_id))
        if not values or values.get("key") != key or int(values.get("expires_at", 0)) <= now:
            return None
        return json.loads(values["calendars"])


def _tokens_values(user_id: str, ciphertext: bytes) -> dict[str, Any]:
    return {**keys.tokens(user_id), "ciphertext": ciphertext}
