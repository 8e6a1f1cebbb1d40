"""Authenticity of Cronofy push notifications (cronofy-api.md §5.3, ARCHITECTURE §7). Named for what it
checks: it was `webhook`, which is the intake function's job, not this module's.

Two independent checks, both constant-time:

- `signature_valid`: the `Cronofy-HMAC-SHA256` header is base64(HMAC-SHA256(client secret, raw
  body)). During a secret rotation Cronofy sends one value per active secret, comma-separated;
  any value matching any of our secrets is enough.
- `channel_token_valid`: the callback URL of each user's channel carries a token derived from
  the user id with our signing key, so a notification for one user's channel cannot be replayed
  against another's URL, and the URL itself is unguessable.

Standard library only: the webhook intake imports this on its cold start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

SIGNATURE_HEADER = "cronofy-hmac-sha256"  # as API Gateway hands it over (lower-cased)


def _signature(client_secret: str, body: bytes) -> bytes:
    return base64.b64encode(hmac.new(client_secret.encode("utf-8"), body, hashlib.sha256).digest())


def signature_valid(header_value: str | None, body: bytes, client_secrets: Iterable[str]) -> bool:
    """True if any comma-separated value of the header is the signature of `body` under any secret.

    Never raises on a malformed header: None, empty, only commas, non-ASCII, truncated or
    tampered values are all simply not valid.
    """
    if not isinstance(header_value, str) or not header_value:
        return False
    try:
        raw = header_value.encode("ascii")
    except UnicodeEncodeError:
        return False
    presented = [value.strip() for value in raw.split(b",")]
    presented = [value for value in presented if value]
    expected = [_signature(secret, body) for secret in client_secrets if secret]
    if not presented or not expected:
        return False
    # Compare every pair without stopping early: the time taken does not say which value matched.
    matched = False
    for signature in expected:
        for value in presented:
            matched |= hmac.compare_digest(signature, value)
    return matched


def channel_token(signing_key: str, user_id: str) -> str:
    """Per-user token in the channel callback URL, derived (not stored) so it can be rebuilt:
    HMAC-SHA256 of `channel:{user_id}`, first 16 bytes, URL-safe base64 without padding."""
    digest = hmac.new(signing_key.encode("utf-8"), f"channel:{user_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode("ascii")


def channel_token_valid(signing_key: str, user_id: str, presented: str | None) -> bool:
    """Constant-time check of the token a callback URL carried against the user's token."""
    if not isinstance(presented, str) or not presented:
        return False
    expected = channel_token(signing_key, user_id).encode("ascii")
    return hmac.compare_digest(expected, presented.encode("utf-8", "surrogatepass"))
