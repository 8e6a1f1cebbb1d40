"""OAuth as the emulated Cronofy runs it: authorization codes, the token endpoint (code and refresh
grants, refresh-token rotation), revocation, and resolving a bearer token to its account.

The codes and tokens live in ``EmulatorState`` with the rest of the tenant; these functions are the
rules that act on them, called by the HTTP routes (``routes.py``), the calendar-owner actions and
Enterprise Connect.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from .errors import ApiError, EmulatorError
from .model import CODE_TTL, DEFAULT_SCOPE, AccessToken, Account, AuthCode, RefreshToken, random_hex, random_id
from .state import EmulatorState


def issue_code(state: EmulatorState, profile_id: str, redirect_uri: str, scope: str = DEFAULT_SCOPE) -> str:
    """Create an authorization code as if the user had allowed access for ``profile_id``."""
    with state.lock:
        if profile_id not in state.profiles:
            raise EmulatorError(f"unknown profile {profile_id}", status=404)
        code = random_id(32)
        state.codes[code] = AuthCode(
            code=code,
            client_id=state.client_id,
            redirect_uri=redirect_uri,
            profile_id=profile_id,
            scope=" ".join(scope.split()),
            expires_at=state.now() + CODE_TTL,
        )
        return code


def check_client(state: EmulatorState, form: dict[str, str]) -> None:
    client_id = form.get("client_id")
    client_secret = form.get("client_secret")
    if not client_id or not client_secret:
        raise ApiError(401, {"error": "invalid_client"})
    ok_id = secrets.compare_digest(client_id.encode(), state.client_id.encode())
    ok_secret = any(
        secrets.compare_digest(client_secret.encode(), s.encode()) for s in list(state.client_secrets)
    )
    if not (ok_id and ok_secret):
        raise ApiError(401, {"error": "invalid_client"})


def _mint_access(state: EmulatorState, sub: str, scope: str) -> AccessToken:
    token = AccessToken(
        token=random_id(32),
        sub=sub,
        scope=scope,
        expires_at=state.now() + timedelta(seconds=state.access_token_ttl),
    )
    state.access_tokens[token.token] = token
    return token


def _mint_refresh(state: EmulatorState, sub: str, scope: str) -> RefreshToken:
    token = RefreshToken(token=random_id(32), sub=sub, scope=scope)
    state.refresh_tokens[token.token] = token
    return token


def token_endpoint(state: EmulatorState, form: dict[str, str]) -> tuple[dict[str, Any], str]:
    """Handle ``POST /oauth/token``; returns the response body and the account's sub."""
    with state.lock:
        check_client(state, form)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise ApiError(400, {"error": "invalid_request", "error_description": "grant_type missing"})
        if grant_type == "authorization_code":
            return _grant_code(state, form)
        if grant_type == "refresh_token":
            return _grant_refresh(state, form)
        raise ApiError(400, {"error": "unsupported_grant_type"})


def _grant_code(state: EmulatorState, form: dict[str, str]) -> tuple[dict[str, Any], str]:
    code_value = form.get("code")
    redirect_uri = form.get("redirect_uri")
    if not code_value or not redirect_uri:
        raise ApiError(
            400, {"error": "invalid_request", "error_description": "code and redirect_uri are required"}
        )
    code = state.codes.get(code_value)
    if code is None or code.client_id != form.get("client_id"):
        raise ApiError(400, {"error": "invalid_grant"})
    # A presented code is spent whatever happens next (single use).
    del state.codes[code_value]
    if state.now() >= code.expires_at or code.redirect_uri != redirect_uri:
        raise ApiError(400, {"error": "invalid_grant"})
    profile = state.profiles.get(code.profile_id)
    if profile is None:
        raise ApiError(400, {"error": "invalid_grant"})
    sub = state.account_by_profile.get(profile.profile_id)
    account = state.accounts.get(sub) if sub else None
    if account is None:
        account = Account(sub=f"acc_{random_hex(24)}", profile_id=profile.profile_id, created=state.now())
        state.accounts[account.sub] = account
        state.account_by_profile[profile.profile_id] = account.sub
    account.revoked = False
    account.profile_attached = True
    account.scope = code.scope
    delay = state.realism.initial_sync_delay
    if delay is not None and not profile.initial_sync_done and profile.initial_sync_due is None:
        state.start_initial_sync(profile, state.clock.precise() + timedelta(seconds=delay))
    access = _mint_access(state, account.sub, code.scope)
    refresh = _mint_refresh(state, account.sub, code.scope)
    return token_response(access.token, state.access_token_ttl, refresh.token, code.scope,
                          account_id=account.sub, sub=account.sub, linking_profile={
                              "provider_name": profile.provider_name,
                              "provider_service": profile.provider_service,
                              "profile_id": profile.profile_id,
                              "profile_name": profile.email,
                          }), account.sub


def token_response(access_token: str, expires_in: int, refresh_token: str, scope: str, **extra: Any) -> dict[str, Any]:
    """The body `/oauth/token` answers with (RFC 6749 section 5.1), plus Cronofy's `extra` fields."""
    return {"token_type": "bearer", "access_token": access_token, "expires_in": expires_in,
            "refresh_token": refresh_token, "scope": scope, **extra}


def _grant_refresh(state: EmulatorState, form: dict[str, str]) -> tuple[dict[str, Any], str]:
    value = form.get("refresh_token")
    if not value:
        raise ApiError(400, {"error": "invalid_request", "error_description": "refresh_token missing"})
    refresh = state.refresh_tokens.get(value)
    if refresh is None or refresh.revoked:
        raise ApiError(400, {"error": "invalid_grant"})
    account = state.accounts.get(refresh.sub)
    if account is None or account.revoked:
        raise ApiError(400, {"error": "invalid_grant"})
    access = _mint_access(state, refresh.sub, refresh.scope)
    if state.rotate_refresh_tokens:
        refresh.revoked = True
        refresh = _mint_refresh(state, refresh.sub, refresh.scope)
    # A refresh answers only the token fields (no account_id, sub or linking_profile).
    return token_response(access.token, state.access_token_ttl, refresh.token, refresh.scope), refresh.sub


def revoke_endpoint(state: EmulatorState, form: dict[str, str]) -> str | None:
    """Handle ``POST /oauth/token/revoke``; returns the revoked account's sub if any."""
    with state.lock:
        check_client(state, form)
        token = form.get("token")
        sub = form.get("sub")
        if not token and not sub:
            raise ApiError(
                400, {"error": "invalid_request", "error_description": "token or sub required"}
            )
        if token:
            found = state.refresh_tokens.get(token) or state.access_tokens.get(token)
            sub = found.sub if found else None
        if sub and sub in state.accounts:
            state.revoke_grants(sub)
            return sub
        return None


def authenticate(state: EmulatorState, authorization: str | None) -> tuple[Account, AccessToken]:
    """Resolve a ``Bearer`` header to (account, token) or raise a 401."""
    with state.lock:
        state.tick()
        if not authorization or not authorization.startswith("Bearer "):
            raise _unauthorized("missing bearer token", "invalid_request")
        value = authorization[len("Bearer ") :].strip()
        token = state.access_tokens.get(value)
        if token is None or token.revoked:
            raise _unauthorized("the access token is not recognised or has been revoked")
        if state.now() >= token.expires_at:
            raise _unauthorized("the access token has expired")
        account = state.accounts.get(token.sub)
        if account is None or account.revoked:
            raise _unauthorized("the authorization has been revoked")
        return account, token



def _unauthorized(description: str, error: str = "invalid_token") -> ApiError:
    header = f'Bearer realm="cronofy", error="{error}", error_description="{description}"'
    return ApiError(401, None, {"WWW-Authenticate": header})
