"""Enterprise Connect (calsync/enterprise.py): an org admin connects the whole crew at once.

Admin routes (session JWT, org admins only):
  POST   /v1/orgs/{org_id}/enterprise-connect           -> Cronofy's Enterprise Connect page
  GET    /v1/orgs/{org_id}/enterprise-connect           -> org state and per-member status
  DELETE /v1/orgs/{org_id}/enterprise-connect           -> end it: its members are disconnected
  POST   /v1/orgs/{org_id}/enterprise-connect/members   -> connect members by user id and e-mail
Cronofy's routes (no JWT; the signed state says who they are for):
  GET    /v1/enterprise-connect/oauth/callback          -> the admin's browser back from Cronofy (302)
  POST   /v1/enterprise-connect/members/callback        -> Cronofy's result per member
"""

from __future__ import annotations

from typing import Annotated, Any, cast

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Cookie, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.shared.cookies import Cookie as SetCookie
from aws_lambda_powertools.shared.cookies import SameSite
from pydantic import BaseModel, ConfigDict, Field

from calsync import http_errors, wiring
from calsync.caller import Caller, caller_from_event
from calsync.config import get_settings
from calsync.connections import valid_return_to
from calsync.cronofy import interactive, route_seconds
from calsync.enterprise import MAX_MEMBERS, MEMBER_CALLBACK_PATH
from calsync.oauth_state import binding_cookie
from calsync.observability import logger, metrics

app = APIGatewayHttpResolver(enable_validation=True)
BINDING_COOKIE = "sn_enterprise_connect"
COOKIE_PATH = "/v1/enterprise-connect"
TAGS = ["Enterprise Connect"]


# The admin's requests refuse unknown fields (422 naming the field, `additionalProperties: false`);
# what Cronofy sends (MemberCallback) allows them: Cronofy may add fields at any time.
class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    return_to: str | None = Field(default=None, max_length=512)


class MemberRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")
    email: str = Field(min_length=3, max_length=254)


class MembersRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    members: list[MemberRequest] = Field(min_length=1, max_length=MAX_MEMBERS)


class MemberAuthorization(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str | None = Field(default=None, max_length=512)
    state: str | None = Field(default=None, max_length=1024)
    error: str | None = Field(default=None, max_length=128)


class MemberCallback(BaseModel):
    """What Cronofy sends to the members' callback URL (see calsync/enterprise.py)."""

    model_config = ConfigDict(extra="allow")

    authorization: MemberAuthorization


http_errors.install(app, conflict_message="something changed meanwhile; try again")


def _caller() -> Caller:
    return caller_from_event(app.current_event.raw_event)


def _doc(description: str, schema: str = "Error", **extra: Any) -> OpenAPIResponse:
    content = {content_types.APPLICATION_JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return cast(OpenAPIResponse, {"description": description, "content": content, **extra})


_MALFORMED_JSON = _doc("`malformed_json`: the request body is not valid JSON")
_ADMIN_ONLY = _doc("`forbidden`: another org than the caller's, or the caller is not an org admin")
_NOT_ACTIVE = _doc("`enterprise_connect_not_active`: no administrator has authorized Enterprise Connect (or it "
                   "ended); `conflict`: it changed meanwhile")


@app.post(
    "/v1/orgs/<org_id>/enterprise-connect",
    operation_id="startEnterpriseConnect",
    tags=TAGS,
    summary="Start Enterprise Connect for the org (admins)",
    description=(
        "Returns Cronofy's Enterprise Connect authorization URL: the org's Google Workspace or Microsoft 365 "
        "administrator authorizes a service account there, once, for the whole org. The `state` is signed, "
        "names the admin and org, expires in 10 minutes and is single-use; the response sets an HttpOnly cookie "
        "(path `/v1/enterprise-connect`) binding it to this browser. `return_to` is the web-app path the "
        "callback redirects to (default `/settings/calendar-sync`)."
    ),
    responses={
        200: _doc("The authorization URL (Cache-Control: no-store)", "ConnectResponse",
                  headers={"Set-Cookie": {"description": "`sn_enterprise_connect`: binds the flow to this browser",
                                          "schema": {"type": "string"}}}),
        400: _MALFORMED_JSON,
        403: _ADMIN_ONLY,
        422: _doc("`invalid_request`: malformed body; `invalid_return_to`: not a web-app path"),
    },
)
def start(org_id: str, request: Annotated[StartRequest | None, Body()] = None) -> Response[dict]:
    return_to = valid_return_to(request.return_to if request else None)
    url, binding = wiring.enterprise_connect().start(_caller(), org_id, return_to)
    settings = get_settings()
    cookie = SetCookie(name=BINDING_COOKIE, value=binding, path=COOKIE_PATH,
                       secure=settings.public_api_url.startswith("https://"), http_only=True,
                       same_site=SameSite.LAX_MODE, max_age=settings.oauth_state_ttl_seconds)
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body={"authorization_url": url},
                    cookies=[cookie], headers={"Cache-Control": "no-store"})


@app.get(
    "/v1/orgs/<org_id>/enterprise-connect",
    operation_id="getEnterpriseConnect",
    tags=TAGS,
    summary="Enterprise Connect and its members (admins)",
    description=(
        "The org's Enterprise Connect (`not_connected`, `active`, `ended`) and every member asked for: "
        "`requested`, `connected`, `failed` (with a `reason`: `unknown_email`, `not_in_domain`, "
        "`already_connected`, `no_writable_calendar`, `code_exchange_failed`, `calendar_service_unavailable`, "
        "`authorization_failed`, ...), `cancelled` or `disconnected`, with the member's connection state."
    ),
    responses={200: _doc("Enterprise Connect and its members", "EnterpriseConnectStatus"), 403: _ADMIN_ONLY},
)
def status(org_id: str) -> dict:
    return wiring.enterprise_connect().status(_caller(), org_id)


@app.delete(
    "/v1/orgs/<org_id>/enterprise-connect",
    operation_id="endEnterpriseConnect",
    tags=TAGS,
    summary="End Enterprise Connect for the org (admins)",
    description=(
        "Revokes the service account and disconnects every member connected through it, the usual way (their "
        "SolarNexus events removed, channel closed, authorization revoked), as cleanup jobs processed in batches "
        "within the shared Cronofy rate limit. Members who connected their calendar themselves are not touched. "
        "Members still `requested` are cancelled: their late callbacks are refused and store nothing."
    ),
    responses={202: _doc("Ended; how many members are being disconnected", "EnterpriseConnectEnded"),
               403: _ADMIN_ONLY, 409: _NOT_ACTIVE},
)
def end(org_id: str) -> Response[dict]:
    body = wiring.enterprise_connect().end(_caller(), org_id)
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=body)


@app.post(
    "/v1/orgs/<org_id>/enterprise-connect/members",
    operation_id="requestEnterpriseConnectMembers",
    tags=TAGS,
    summary="Connect members' calendars (admins)",
    description=(
        f"Members by SolarNexus user id and calendar e-mail, 1..{MAX_MEMBERS} per call. Cronofy is asked at "
        "most 50 members per request, through the shared rate limiter; it calls back per member, and the "
        "member's primary calendar is connected and backfilled. Members who already have a connection are "
        "`skipped`. A user id that belongs to another organization as far as the service knows (a connection "
        "made there, or milestones the core platform scheduled for them there) is `refused` alone, with "
        "`error` 403 `not_in_org`; nothing is stored for it. An id known nowhere cannot be checked: if the "
        "user's own session later names another org, what was made under their id here is disconnected. "
        "Follow progress with `GET /v1/orgs/{org_id}/enterprise-connect`."
    ),
    responses={
        202: _doc("Each member's status after asking Cronofy", "EnterpriseConnectRequested"),
        400: _MALFORMED_JSON,
        403: _ADMIN_ONLY,
        409: _NOT_ACTIVE,
        422: _doc("`invalid_request`: malformed body or too many members; `invalid_email`; `duplicate_member`"),
    },
)
def request_members(org_id: str, request: Annotated[MembersRequest, Body()]) -> Response[dict]:
    body = wiring.enterprise_connect().request_members(_caller(), org_id,
                                                        [m.model_dump() for m in request.members])
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=body)


@app.get(
    "/v1/enterprise-connect/oauth/callback",
    operation_id="enterpriseConnectCallback",
    tags=["Cronofy"],
    summary="Enterprise Connect callback (the admin's browser, redirected by Cronofy)",
    description=(
        "Verifies the `state` (signature, expiry, single use, the browser-binding cookie), redeems the code and "
        "stores the service account's tokens encrypted for the org. Always a 302 to the web app with "
        "`enterprise_connect=connected|error` and, on error, `reason=access_denied | invalid_state | state_expired "
        "| state_used | state_not_for_this_browser | code_exchange_failed | calendar_service_unavailable | "
        "internal_error`. Nothing is stored on a failure."
    ),
    responses={302: {"description": "To the web app with the outcome in the query string; the cookie is cleared",
                     "headers": {"Location": {"description": "e.g. `{WebAppUrl}/settings/calendar-sync?"
                                                             "enterprise_connect=connected`",
                                              "schema": {"type": "string"}}}}},
)
def admin_callback(
    code: Annotated[str | None, Query(description="Authorization code (on success)")] = None,
    state: Annotated[str | None, Query(description="The signed state")] = None,
    error: Annotated[str | None, Query(description="e.g. `access_denied`")] = None,
    sn_enterprise_connect: Annotated[str | None, Cookie(description="Browser binding set by the start route")] = None,
) -> Response[str]:
    params = {k: v for k, v in (("code", code), ("state", state), ("error", error)) if v}
    binding = binding_cookie(app.current_event.raw_event, BINDING_COOKIE)
    try:
        location = wiring.enterprise_connect().complete(params, binding)
    except Exception:  # noqa: BLE001 - the browser must always land back on the web app
        logger.exception("enterprise connect callback failed")
        location = (f"{get_settings().web_app_url}/settings/calendar-sync?enterprise_connect=error"
                    "&reason=internal_error")
    return Response(status_code=302, content_type=content_types.TEXT_HTML, body="",
                    headers={"Location": location, "Cache-Control": "no-store"},
                    cookies=[SetCookie(name=BINDING_COOKIE, value="", path=COOKIE_PATH, http_only=True,
                                       same_site=SameSite.LAX_MODE, max_age=0)])


@app.post(
    "/v1/enterprise-connect/members/callback",
    operation_id="enterpriseConnectMemberCallback",
    tags=["Cronofy"],
    summary="Enterprise Connect result for one member (called by Cronofy)",
    description=(
        "`{\"authorization\": {\"code\", \"state\"}}` on success, `{\"authorization\": {\"error\", \"state\"}}` on "
        "failure. The state must be one this service issued for a member still `requested`, in an org whose "
        "Enterprise Connect is still active under the same grant; otherwise it is refused and nothing is stored. "
        "On success the code is redeemed, the member's primary calendar chosen, a push channel created and the "
        "backfill started."
    ),
    responses={
        200: _doc("Handled: the member is `connected` or `failed` (with a reason)", "EnterpriseConnectMemberResult"),
        400: _doc("`invalid_callback`: not an Enterprise Connect result; `malformed_json`: the body is not valid "
                  "JSON"),
        403: _doc("`invalid_state`: a forged or altered state; nothing is stored"),
        409: _doc("`enterprise_connect_ended`: the org ended Enterprise Connect; `state_used`: already handled"),
        503: _doc("`rate_limited`: the shared Cronofy limit is reached; the code was not used, try again"),
    },
)
def member_callback(body: Annotated[MemberCallback, Body()]) -> Response[dict]:
    outcome = wiring.enterprise_connect().member_callback(body.model_dump(exclude_none=True))
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=outcome)



@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
def lambda_handler(event: dict, context) -> dict:
    refused = http_errors.other_org(event) or http_errors.unreadable_body(event)
    if refused is not None:
        return refused
    if _path(event) == MEMBER_CALLBACK_PATH:
        # Cronofy's call, not a person's: queue priority, and a refusal of the limiter is a 503 it retries.
        return app.resolve(event, context)
    # An admin (or the admin's browser) waits: interactive priority, as the calendar routes, so these
    # routes never draw on the share of Cronofy's limit kept for queue work.
    with interactive(route_seconds(context)):
        return app.resolve(event, context)


def _path(event: dict) -> str:
    return str(event.get("rawPath") or ((event.get("requestContext") or {}).get("http") or {}).get("path") or "")
