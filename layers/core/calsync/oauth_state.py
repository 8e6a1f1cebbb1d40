"""Signed, expiring, single-use, browser-bound OAuth `state`.

`state` = base64url(JSON claims) "." base64url(HMAC-SHA256(signing key, claims part)).
- signed: a forged or altered state fails the HMAC check;
- expiring: claims carry `expires_at` (minutes ahead);
- single-use: the nonce is stored at issue and deleted atomically at the callback;
- bound to user and org (in the claims and the stored record) and to the browser that started
  the flow: the connect response sets an HttpOnly cookie whose hash is in the claims, so a state
  carried into another user's browser (or a victim's state completed with an attacker's
  calendar) is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

from pydantic import ValidationError

from calsync.models import OAuthStateClaims

BINDING_COOKIE = "sn_calendar_oauth"


class StateError(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def binding_cookie(event: dict, name: str = BINDING_COOKIE) -> str | None:
    """The browser-binding cookie `name` of an API Gateway (HTTP API v2) event, if any. Plain dict access:
    the Powertools data classes package costs ~45 ms of cold start in the OAuth callback."""
    for cookie in event.get("cookies") or []:
        key, _, value = cookie.partition("=")
        if key.strip() == name:
            return value.strip()
    return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def binding_hash(binding: str) -> str:
    return _b64(hashlib.sha256(binding.encode()).digest())[:32]


class StateSigner:
    def __init__(self, signing_key: str, ttl_seconds: int = 600, clock=time.time):
        self._key = signing_key.encode()
        self._ttl = ttl_seconds
        self._clock = clock

    def issue(
        self, user_id: str, org_id: str, provider: str, return_to: str | None
    ) -> tuple[str, str, OAuthStateClaims]:
        """Returns (state, browser binding secret for the cookie, claims)."""
        binding = secrets.token_urlsafe(24)
        claims = OAuthStateClaims(
            user_id=user_id,
            org_id=org_id,
            provider=provider,
            nonce=secrets.token_urlsafe(18),
            expires_at=int(self._clock()) + self._ttl,
            return_to=return_to,
        )
        payload = claims.model_dump(exclude_none=True)
        payload["binding"] = binding_hash(binding)
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        return f"{body}.{self._sign(body)}", binding, claims

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def verify(self, state: str, binding: str | None) -> OAuthStateClaims:
        """Check signature, expiry and browser binding (single use is the store's job)."""
        if not state or state.count(".") != 1 or len(state) > 2048:
            raise StateError("invalid_state")
        body, signature = state.split(".")
        try:  # bytes: compare_digest refuses non-ASCII str, and a forged state may carry anything
            valid = hmac.compare_digest(self._sign(body).encode(), signature.encode("utf-8"))
        except (UnicodeError, ValueError):
            valid = False
        if not valid:
            raise StateError("invalid_state")
        try:
            payload = json.loads(_unb64(body))
            claims = OAuthStateClaims.model_validate(payload)
        except (ValueError, ValidationError) as error:
            raise StateError("invalid_state") from error
        if claims.expires_at < self._clock():
            raise StateError("state_expired")
        if not binding or not hmac.compare_digest(binding_hash(binding), str(payload.get("binding", ""))):
            raise StateError("state_not_for_this_browser")
        return claims
