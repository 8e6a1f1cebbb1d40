"""Push notifications already accepted (`pk=NOTIFY#{channel}, sk={type}#{changes_since}`, expiring)
and the newest `changes_since` accepted per channel (`sk=NEWEST`): replays and stale retries of
Cronofy's pushes are refused before anything is queued."""

from __future__ import annotations

from calsync import keys
from calsync.clock import parse_utc
from calsync.dynamo import Repository, from_item, to_item


class NotificationLog(Repository):
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
        key = keys.notification(channel_id, kind, changes_since)
        if not self._first_or_copy(key, now, window, grace, max_copies):
            return "duplicate"
        behind = self._behind_newest(channel_id, changes_since) if changes_since else None
        if behind is not None and behind > stale_after:
            return "stale"
        return "new"

    def _first_or_copy(self, key: keys.Key, now: float, window: float, grace: float, max_copies: int) -> bool:
        """The first of its kind within `window`, or a copy that may announce a later change."""
        expires = int(now + window)
        first = self.table.write_if(
            "put_item",
            Item=to_item({**key, "accepted_at": int(now), "expires_at": expires, "ttl": expires,
                          "read_started": False, "copies": 0}),
            ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
            ExpressionAttributeValues=to_item({":now": int(now)}),
        )
        return first is not None or self.table.write_if(
            "update_item", Key=to_item(key), UpdateExpression="SET read_started = :f ADD copies :one",
            ConditionExpression="read_started = :t AND accepted_at >= :since AND copies < :max",
            ExpressionAttributeValues=to_item({":f": False, ":t": True, ":one": 1, ":since": int(now - grace),
                                               ":max": max_copies}),
        ) is not None

    def _behind_newest(self, channel_id: str, changes_since: str) -> float | None:
        """Seconds `changes_since` is behind the newest accepted on the channel; None when it is the
        newest (it is recorded as such)."""
        newest_key = keys.newest_notification(channel_id)
        failed = self.table.conditional_failure(
            "update_item", Key=to_item(newest_key), UpdateExpression="SET newest = :cs",
            ConditionExpression="attribute_not_exists(newest) OR newest < :cs",
            ExpressionAttributeValues=to_item({":cs": changes_since}), ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        if failed is None:
            return None
        newest = from_item(failed.get("Item") or {}).get("newest")
        if newest is None:
            newest = (self.table.get(newest_key) or {}).get("newest")
        return _seconds_between(changes_since, newest) if newest else None

    def notification_read_started(self, channel_id: str, kind: str, changes_since: str | None) -> None:
        """The processor is about to read what this notification announced: a copy arriving from now on
        may be a genuine later change (see accept_notification)."""
        self.table.write_if("update_item", Key=to_item(keys.notification(channel_id, kind, changes_since)),
                            UpdateExpression="SET read_started = :t", ConditionExpression="attribute_exists(pk)",
                            ExpressionAttributeValues=to_item({":t": True}))

    def forget_notification(self, channel_id: str, kind: str, changes_since: str | None) -> None:
        """Undo accept_notification's marker (the message could not be queued: Cronofy's retry must pass)."""
        self.table.delete(keys.notification(channel_id, kind, changes_since))


def _seconds_between(earlier: str, later: str) -> float:
    """later - earlier in seconds for two wire times; 0 when either is not a time."""
    try:
        return (parse_utc(later) - parse_utc(earlier)).total_seconds()
    except (ValueError, TypeError):
        return 0.0
