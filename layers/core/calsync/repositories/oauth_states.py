"""Single-use OAuth states (`pk=OAUTHSTATE#{nonce}, sk=STATE`, expiring): issued with the
authorization URL, spent by the callback."""

from __future__ import annotations

from typing import Any

from calsync import keys
from calsync.dynamo import Repository, from_item, to_item


class OAuthStateRepository(Repository):
    def put_oauth_state(self, nonce: str, user_id: str, org_id: str, expires_at: int) -> None:
        self.table.put({**keys.oauth_state(nonce), "user_id": user_id, "org_id": org_id, "ttl": expires_at},
                       ConditionExpression="attribute_not_exists(pk)")

    def consume_oauth_state(self, nonce: str) -> dict[str, Any] | None:
        """Atomically delete and return the state record; None if it was never issued or already used."""
        resp = self.table.write_if("delete_item", Key=to_item(keys.oauth_state(nonce)),
                                   ConditionExpression="attribute_exists(pk)", ReturnValues="ALL_OLD")
        return from_item(resp["Attributes"]) if resp is not None else None
