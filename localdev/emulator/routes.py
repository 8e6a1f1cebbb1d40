"""The routes a Cronofy client sees: OAuth on the app host (consent page, token, revoke, relink) and
the ``/v1`` API, each ``/v1`` route an endpoint function of ``api.py`` behind bearer authentication,
plus Enterprise Connect's (``enterprise.py``)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

from . import api, enterprise, oauth
from .actions import reconnect_profile
from .consent import render_consent, render_error, render_relink
from .core import Emulator
from .model import AUTHORIZE_PROVIDERS, KNOWN_SCOPES, Profile
from .state import EmulatorState
from .web import Handler, Request, Response, Router, html_response, json_response, redirect, redirect_with


class _ConsentError(Exception):
    pass


def validate_authorize(params: dict[str, str], client_id: str) -> dict[str, str]:
    """The consent page's parameters, checked (``_ConsentError`` names the first problem)."""
    if params.get("response_type") != "code":
        raise _ConsentError("response_type must be code")
    if params.get("client_id") != client_id:
        raise _ConsentError("unknown client_id")
    redirect_uri = params.get("redirect_uri") or ""
    parsed = urllib.parse.urlsplit(redirect_uri)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise _ConsentError("redirect_uri is missing or is not an absolute http(s) URL")
    scopes = (params.get("scope") or "").split()
    if not scopes:
        raise _ConsentError("scope is required")
    unknown = [s for s in scopes if s not in KNOWN_SCOPES]
    if unknown:
        raise _ConsentError(f"unknown scope: {' '.join(unknown)}")
    # An empty provider_name means none (pycronofy's user_auth_link always sends the
    # parameter, empty by default); "False"/"True" are booleans too (pycronofy sends them).
    provider = params.get("provider_name")
    if provider == "":
        params.pop("provider_name")
        provider = None
    if provider is not None and provider not in AUTHORIZE_PROVIDERS:
        raise _ConsentError(f"unknown provider_name {provider}")
    if params.get("avoid_linking") is not None and params["avoid_linking"].lower() not in ("true", "false"):
        raise _ConsentError("avoid_linking must be true or false")
    return params


class _OAuthRoutes:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.state = emu.state

    def authorize_get(self, request: Request) -> Response:
        params = {k: v[0] for k, v in request.query.items() if v}
        try:
            validate_authorize(params, self.emu.client_id)
        except _ConsentError as exc:
            return html_response(400, render_error(str(exc)))
        return html_response(
            200, render_consent(params, self.state.profiles_for_provider(params.get("provider_name")))
        )

    def authorize_post(self, request: Request) -> Response:
        params = dict(urllib.parse.parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        try:
            validate_authorize(params, self.emu.client_id)
        except _ConsentError as exc:
            return html_response(400, render_error(str(exc)))
        decision = params.get("decision")
        if decision == "deny":
            return redirect(
                redirect_with(params["redirect_uri"], {"error": "access_denied", "state": params.get("state")})
            )
        if decision != "allow":
            return html_response(400, render_error("decision must be allow or deny"))
        candidates = self.state.profiles_for_provider(params.get("provider_name"))
        chosen = params.get("profile_id")
        if chosen and chosen not in {p.profile_id for p in candidates}:
            page = render_consent(params, candidates, error="Choose one of the listed accounts.")
            return html_response(400, page)
        if not chosen and len(candidates) != 1:
            message = "Choose the account to connect." if candidates else "No account is available to connect."
            return html_response(400, render_consent(params, candidates, error=message))
        chosen = chosen or candidates[0].profile_id
        code = oauth.issue_code(self.state, chosen, params["redirect_uri"], params["scope"])
        return redirect(redirect_with(params["redirect_uri"], {"code": code, "state": params.get("state")}))

    def token(self, request: Request) -> Response:
        form = request.form()
        if self.emu.enterprise.handles_token(form):  # a service account's code or refresh token
            return json_response(200, self.emu.enterprise.token_endpoint(form), {"Cache-Control": "no-store"})
        body, sub = oauth.token_endpoint(self.state, form)
        request.sub = sub
        return json_response(200, body, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def revoke(self, request: Request) -> Response:
        form = request.form()
        if self.emu.enterprise.handles_revoke(form):
            self.emu.enterprise.revoke(form)
            return json_response(200)
        request.sub = oauth.revoke_endpoint(self.state, form)
        return json_response(200)

    def relink_get(self, request: Request, provider: str) -> Response:
        return html_response(200, render_relink(self._relink_profiles(provider, request)))

    def relink_post(self, request: Request, provider: str) -> Response:
        profiles = self._relink_profiles(provider, request)
        for profile in profiles:
            reconnect_profile(self.state, profile.profile_id)
        return html_response(200 if profiles else 404, render_relink(profiles, done=bool(profiles)))

    def _relink_profiles(self, provider: str, request: Request) -> list[Profile]:
        email = (request.param("email") or "").lower()
        with self.state.lock:
            return [
                p
                for p in self.state.profiles.values()
                if p.provider_name == provider and p.email.lower() == email
            ]


def _authed(state: EmulatorState, fn: Callable[..., tuple[int, Any]], arg: str | None = None) -> Handler:
    """A ``/v1`` route: authenticate the bearer token, then ``fn(state, account, token, *path
    parameters[, the JSON body or the query])``."""

    def handler(request: Request, **params: str) -> Response:
        account, token = oauth.authenticate(state, request.headers.get("Authorization"))
        request.sub = account.sub
        extra: list[Any] = list(params.values())
        if arg == "json":
            extra.append(request.json())
        elif arg == "query":
            extra.append(request.query)
        status, body = fn(state, account, token, *extra)
        return json_response(status, body)

    return handler


def _page(kind: str) -> Callable[..., tuple[int, Any]]:
    return lambda state, account, token, page_token: api.read_page(state, account, kind, page_token)


# (method, path, endpoint, what it takes besides the path parameters)
V1_ROUTES: tuple[tuple[str, str, Callable[..., tuple[int, Any]], str | None], ...] = (
    ("GET", "/v1/userinfo", api.userinfo, None),
    ("GET", "/v1/profiles", api.profiles, None),
    ("POST", "/v1/profiles/{profile_id}/revoke", api.revoke_profile, None),
    ("GET", "/v1/account", api.account_info, None),
    ("GET", "/v1/calendars", api.calendars, None),
    ("POST", "/v1/calendars/{calendar_id}/events", api.upsert_event, "json"),
    ("DELETE", "/v1/calendars/{calendar_id}/events", api.delete_event, "json"),
    ("GET", "/v1/events", api.read_events, "query"),
    ("DELETE", "/v1/events", api.bulk_delete, "json"),
    ("GET", "/v1/events/pages/{token}", _page("events"), None),
    ("GET", "/v1/free_busy", api.free_busy, "query"),
    ("GET", "/v1/free_busy/pages/{token}", _page("free_busy"), None),
    ("GET", "/v1/channels", api.list_channels, None),
    ("POST", "/v1/channels", api.create_channel, "json"),
    ("DELETE", "/v1/channels/{channel_id}", api.close_channel, None),
    ("POST", "/v1/batch", api.batch, "json"),
)


def build_api_router(emu: Emulator) -> Router:
    router = Router()
    routes = _OAuthRoutes(emu)
    router.add("GET", "/oauth/authorize", routes.authorize_get)
    router.add("POST", "/oauth/authorize", routes.authorize_post)
    router.add("POST", "/oauth/token", routes.token)
    router.add("POST", "/oauth/token/revoke", routes.revoke)
    router.add("GET", "/relink/{provider}", routes.relink_get)
    router.add("POST", "/relink/{provider}", routes.relink_post)
    for method, path, endpoint, arg in V1_ROUTES:
        router.add(method, path, _authed(emu.state, endpoint, arg))
    enterprise.add_routes(router, emu.enterprise)  # Enterprise Connect (enterprise.py)
    return router
