"""A local stand-in for the SolarNexus session issuer and the HTTP API's JWT authorizer.

In AWS the HTTP API verifies the web app's JWT (issuer/audience in template.yaml) and hands the
claims to the function; locally the router does the same with an HS256 key of its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

ISSUER = "https://auth.local.solarnexus.test/"
AUDIENCE = "solarnexus-web"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(key: bytes, user_id: str, org_id: str, roles: list[str] | None = None, ttl: int = 3600) -> str:
    header = {"alg": "HS256", "typ": "JWT"}
    now = int(time.time())
    claims = {"sub": user_id, "org_id": org_id, "roles": roles or ["member"], "iss": ISSUER, "aud": AUDIENCE,
              "iat": now, "exp": now + ttl}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def verify(key: bytes, token: str) -> dict | None:
    """Claims as the HTTP API passes them (array claims as one "[a b]" string), or None."""
    try:
        header_b64, claims_b64, signature_b64 = token.split(".")
        expected = hmac.new(key, f"{header_b64}.{claims_b64}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(signature_b64)):
            return None
        claims = json.loads(_unb64(claims_b64))
    except ValueError:
        return None
    if claims.get("iss") != ISSUER or claims.get("aud") != AUDIENCE or claims.get("exp", 0) < time.time():
        return None
    return {k: (f"[{' '.join(map(str, v))}]" if isinstance(v, list) else str(v)) for k, v in claims.items()}
