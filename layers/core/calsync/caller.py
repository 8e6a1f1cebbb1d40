"""Who is calling: the SolarNexus session JWT's claims, as the HTTP API's JWT authorizer hands them over."""

from __future__ import annotations

import json

from pydantic import BaseModel

from calsync.errors import Forbidden, Unauthenticated


class Caller(BaseModel):
    user_id: str
    org_id: str
    roles: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def require_org(self, org_id: str) -> None:
        """Org isolation: every org-scoped read goes through here."""
        if org_id != self.org_id:
            raise Forbidden("this organization is not yours")


def parse_roles(value) -> frozenset[str]:
    """Array claims arrive as a list or, through the HTTP API, as one string: "[admin member]"."""
    if value is None:
        return frozenset()
    if isinstance(value, list | tuple | set | frozenset):
        return frozenset(str(v) for v in value)
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            parsed = json.loads(text)
            if isinstance(parsed, list):
                return frozenset(str(v) for v in parsed)
        except ValueError:
            pass
        text = text[1:-1]
    return frozenset(part for part in text.replace(",", " ").split() if part)


def caller_from_event(event: dict) -> Caller:
    claims = ((event.get("requestContext") or {}).get("authorizer") or {}).get("jwt", {}).get("claims") or {}
    user_id, org_id = claims.get("sub"), claims.get("org_id")
    if not user_id or not org_id:
        raise Unauthenticated("a SolarNexus session is required")
    return Caller(user_id=str(user_id), org_id=str(org_id), roles=parse_roles(claims.get("roles")))
