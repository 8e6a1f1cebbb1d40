"""The OpenAPI document of the HTTP API (openapi/openapi.json), generated from the route declarations.

    python -m localdev.openapi            # write openapi/openapi.json (make openapi)
    python -m localdev.openapi --check    # exit 1 when the committed document is out of date

The web-app routes come from the calendar API's own resolver (Powertools
`get_openapi_json_schema`, from its decorators, request models and parameters). The OAuth callback
and the Cronofy webhook are handled by functions that do not use the Event Handler, so they are
declared here on a resolver used only for this document. Then what template.yaml says about each
route is added: which routes carry the session JWT, and the answers API Gateway gives itself (401,
429, 500). The response schemas named in the decorators (`#/components/schemas/...`) are the
pydantic models below. The document must name exactly the routes template.yaml declares.
"""

from __future__ import annotations

import json
import sys
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.merge import OpenAPIMerge
from aws_lambda_powertools.event_handler.openapi.params import Body, Cookie, Header, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from calsync.models import ConnectionState
from localdev import template

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "openapi" / "openapi.json"
REF_PREFIX = "#/components/schemas/"
SECURITY_SCHEME = "sessionJwt"

DESCRIPTION = """\
Connects each SolarNexus user's Google, Microsoft or Apple calendar through Cronofy.

**Authentication.** The web-app routes need a SolarNexus session JWT (`Authorization: Bearer ...`),
checked by the HTTP API's JWT authorizer (issuer and audience are stack parameters); the handler reads
`sub`, `org_id` and `roles` from its claims. The OAuth callback (a browser redirect from Cronofy) and the
Cronofy webhook carry no JWT: the signed OAuth `state`, and the webhook's HMAC and channel token, say
who they are for.

**Errors.** Every error the service answers itself has the body `{"error": {"code", "message"}}`
(schema `Error`): `code` is stable and meant for programs, `message` is for people. Answers API Gateway
gives before or instead of the function (JWT refused, throttled, function failed) have its own body
`{"message": "..."}` (schema `GatewayError`), among them 413 for a request over 10 MB.

**Unknown fields.** A request body from a SolarNexus client with a field the schema does not name is
refused: 422 `invalid_request`, the message naming the field (`additionalProperties: false`), so a typo
fails at once instead of being ignored. What Cronofy sends may carry fields not listed here
(`additionalProperties: true`): Cronofy adds fields without notice.

Times are ISO-8601 UTC on the wire.
"""


# ---- response bodies (documentation models; the handlers build these shapes) ----------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable, e.g. `not_found`, `invalid_request`, `forbidden`",
                      examples=["calendar_not_writable"])
    message: str = Field(description="For people; wording may change",
                         examples=["that calendar is not a writable calendar of this account"])


class Error(BaseModel):
    """An error answered by the service: a 4xx (or 5xx) status with this body."""

    error: ErrorDetail


class GatewayError(BaseModel):
    """An answer API Gateway gives itself: `Unauthorized`, `Too Many Requests`, `Internal Server Error`."""

    message: str = Field(examples=["Unauthorized"])


class ConnectResponse(BaseModel):
    authorization_url: str = Field(description="Cronofy's authorization page; send the browser there")


class CalendarRef(BaseModel):
    id: str
    name: str


class BackfillStatus(BaseModel):
    """Progress of the workflow that fills the calendar after a calendar is chosen."""

    status: Literal["pending", "running", "succeeded", "failed"]
    done: int = Field(description="Milestones written so far")
    total: int = Field(description="Milestones to write")
    error: str | None = Field(default=None, description="Why the last run failed")


class ConnectionStatus(BaseModel):
    """The user's connection. When not connected, only `state` is present."""

    state: ConnectionState
    provider: Literal["google", "microsoft", "apple"] | None = None
    profile_name: str | None = Field(default=None, description="The calendar account, e.g. an email address")
    calendar: CalendarRef | None = Field(default=None, description="null until a calendar is chosen")
    connected_at: datetime | None = None
    last_sync_at: datetime | None = Field(default=None, description="When the last backfill finished")
    backfill: BackfillStatus | None = None
    last_error: str | None = Field(default=None, description="Why sync stopped or a backfill failed, if it did")
    connected_by: Literal["enterprise_connect"] | None = Field(
        default=None, description="Present when the org's administrator connected this calendar through Enterprise "
                                  "Connect (\"connected by your administrator\"); absent when the user did")


class CalendarEntry(BaseModel):
    id: str
    name: str
    primary: bool
    selected: bool = Field(description="The calendar SolarNexus events go to now")


class CalendarList(BaseModel):
    calendars: list[CalendarEntry]


class DisconnectResponse(BaseModel):
    state: Literal["disconnecting", "not_connected"]


class OrgConnection(BaseModel):
    user_id: str
    state: ConnectionState
    provider: str
    sync: bool = Field(description="Shows the scheduler's sync icon (`connected` or `syncing`)")
    calendar_name: str | None = Field(default=None, description="Org admins and the caller's own row only")
    profile_name: str | None = Field(default=None, description="Org admins and the caller's own row only")
    last_error: str | None = Field(default=None, description="Org admins and the caller's own row only")
    connected_by: Literal["enterprise_connect"] | None = Field(
        default=None, description="Org admins and the caller's own row only: present when connected by the admin")


class OrgConnections(BaseModel):
    connections: list[OrgConnection]


class BusyInterval(BaseModel):
    start: datetime
    end: datetime


class MemberData(BaseModel):
    """How far a member's busy data can be trusted."""

    connected: bool = Field(description="Has a calendar connection in this org (`connected`, `syncing` or "
                                        "`needs_reauth`); without one, a member counts as free in working hours")
    state: ConnectionState
    timezone: str = Field(description="IANA zone their working hours are in (their calendar account's, else the "
                                      "request's `timezone`, else UTC)")
    as_of: datetime | None = Field(description="Last successful refresh of their busy blocks from the calendar")
    stale: bool = Field(description="Not syncing (no connection, `needs_reauth`, ...), not refreshed for longer "
                                    "than the stage's `BusyStaleAfterMinutes`, or asked about days past what their "
                                    "stored busy blocks cover (60 days ahead of their last full refresh): busy "
                                    "time there is unknown, not free")


class BusyResponse(BaseModel):
    users: dict[str, list[BusyInterval]] = Field(description="Every requested user id, `[]` when nothing is known")
    members: dict[str, MemberData] = Field(description="Every requested user id")


class AvailabilitySlot(BaseModel):
    start: datetime
    end: datetime
    user_ids: list[str] = Field(description="Every member free for the whole slot (at least `required`), in "
                                            "request order")


class AvailabilityResponse(BaseModel):
    slots: list[AvailabilitySlot] = Field(description="In time order, at most `max_results`")
    members: dict[str, MemberData] = Field(description="Every requested user id")


class HealthError(BaseModel):
    reason: str
    at: datetime


class HealthBackfill(BaseModel):
    done: int
    total: int
    status: Literal["pending", "running", "succeeded", "failed"] | None = None


class OpenConflict(BaseModel):
    conflict_id: str = Field(description="As in `calendar.conflict_detected`, stable until it is resolved")
    milestone_id: str
    milestone_version: int = Field(description="The milestone's version when last judged")
    milestone_start: datetime
    milestone_end: datetime
    overlap: BusyInterval = Field(description="The part of the milestone the member's own busy time covers (start and "
                                          "end only: nothing else of their events)")
    detected_at: datetime


class MemberHealth(BaseModel):
    user_id: str
    state: ConnectionState
    provider: str
    profile_name: str | None = None
    calendar_name: str | None = None
    timezone: str | None = Field(description="The calendar account's IANA zone, if known")
    connected_at: datetime
    last_sync_at: datetime | None = Field(description="Last successful sync: a finished backfill or a busy refresh")
    as_of: datetime | None = Field(description="Last successful refresh of the busy blocks")
    last_error: HealthError | None
    stale: bool
    backfill: HealthBackfill | None
    managed_events: int = Field(description="SolarNexus events kept on the member's calendar")
    conflicts: list[OpenConflict] = Field(description="Open conflicts: milestones assigned to the member, not over "
                                                      "yet, that their own busy time overlaps; by milestone start")


class HealthSummary(BaseModel):
    members: int
    stale: int
    needs_reauth: int
    with_errors: int
    conflicts: int = Field(description="Open conflicts of all members")


class CalendarHealthResponse(BaseModel):
    members: list[MemberHealth] = Field(description="Members with a calendar connection, by user id")
    summary: HealthSummary
    checked_at: datetime


class WebhookAnswer(BaseModel):
    status: Literal["queued", "ignored", "duplicate", "stale"]


MemberStatus = Literal["requested", "connected", "failed", "skipped", "cancelled", "disconnected"]


class EnterpriseConnectMember(BaseModel):
    user_id: str
    email: str
    status: MemberStatus
    reason: str | None = Field(default=None, description="Why it failed, was skipped or ended, e.g. `unknown_email`, "
                                                         "`not_in_domain`, `already_connected`")
    requested_at: datetime | None = None
    updated_at: datetime | None = None
    connection_state: ConnectionState = Field(description="The member's calendar connection now")
    calendar_name: str | None = Field(default=None, description="The calendar connected (the member's primary one)")


class EnterpriseConnectStatus(BaseModel):
    state: Literal["not_connected", "active", "ended"]
    authorized_by: str | None = None
    authorized_at: datetime | None = None
    ended_by: str | None = None
    ended_at: datetime | None = None
    members: list[EnterpriseConnectMember]


class MemberRefusal(BaseModel):
    status: Literal[403] = Field(description="The HTTP status this member alone would have been answered")
    code: Literal["not_in_org"]
    message: str


class EnterpriseConnectRequestedMember(BaseModel):
    user_id: str
    email: str
    status: Literal["requested", "failed", "skipped", "refused"] = Field(description=(
        "`refused` (with `reason` and `error` `not_in_org`, 403): the user id belongs to another organization "
        "as far as the service knows (a calendar connection made in another org, or milestones the core "
        "platform scheduled for them in another org); nothing is stored or changed for them, the rest of the "
        "members are still asked for."))
    reason: str | None = None
    error: MemberRefusal | None = Field(default=None, description="Present when `status` is `refused`")


class EnterpriseConnectRequested(BaseModel):
    members: list[EnterpriseConnectRequestedMember]
    requested: int = Field(description="Members Cronofy was asked for (the rest failed, were skipped or refused)")
    cronofy_requests: int = Field(description="Delegated-access requests sent (at most 50 members each)")


class EnterpriseConnectEnded(BaseModel):
    state: Literal["ended"]
    disconnecting: int = Field(description="Members connected through Enterprise Connect, now being disconnected")
    cancelled: int = Field(description="Members still `requested`, whose callbacks will be refused")


class EnterpriseConnectMemberResult(BaseModel):
    status: Literal["connected", "failed", "disconnected"]
    reason: str | None = None


RESPONSE_MODELS = (Error, GatewayError, ConnectResponse, ConnectionStatus, CalendarList, DisconnectResponse,
                   OrgConnections, BusyResponse, AvailabilityResponse, CalendarHealthResponse, WebhookAnswer,
                   EnterpriseConnectStatus, EnterpriseConnectRequested, EnterpriseConnectEnded,
                   EnterpriseConnectMemberResult)


# ---- the routes of the functions that do not use the Event Handler (documentation only) -------------


class CronofyNotificationBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = Field(description="`change` and `profile_disconnected` are acted on; `verification` and "
                                  "unknown types are acknowledged and ignored", examples=["change"])
    changes_since: str | None = Field(default=None, examples=["2026-11-24T10:00:00Z"])


class CronofyChannel(BaseModel):
    model_config = ConfigDict(extra="allow")

    channel_id: str
    callback_url: str | None = None


class CronofyNotification(BaseModel):
    """A Cronofy push notification (at most 64 KB)."""

    model_config = ConfigDict(extra="allow")

    notification: CronofyNotificationBody
    channel: CronofyChannel | None = None


def _ref(description: str, schema: str, **extra: Any) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": REF_PREFIX + schema}}}, **extra}


other_routes = APIGatewayHttpResolver()
_WEBHOOK_DESCRIPTION = (
    "Cronofy's push notifications for a user's channel (its callback URL carries a per-user channel token). "
    "Checked before anything is queued: size, then `Cronofy-HMAC-SHA256` (HMAC-SHA256 of the raw body with the "
    "client secret, base64; any of several comma-separated values may match), then that the body is a "
    "notification, then the channel and its token. One message is queued for the notification processor; "
    "no Cronofy call is made, so the answer comes well within Cronofy's 5 s."
)
_WEBHOOK_RESPONSES = {
    200: _ref("`ignored`: `verification` or a notification type this service does not act on; `duplicate`: the "
              "same notification was already accepted (a replay); `stale`: its `changes_since` is far behind the "
              "newest accepted on its channel. Nothing is queued", "WebhookAnswer"),
    202: _ref("`queued`: one message on the notifications queue", "WebhookAnswer"),
    400: _ref("`invalid_body`: not decodable; `invalid_notification`: not a Cronofy notification, or no valid "
              "`channel_id` / `changes_since`", "Error"),
    401: _ref("`invalid_signature`: the HMAC does not match the body; `invalid_channel`: unknown channel, or the "
              "URL's channel token is not the channel owner's. Nothing is queued", "Error"),
    413: _ref("`body_too_large`: over 64 KB", "Error"),
}
_SIGNATURE = Annotated[str, Header(alias="Cronofy-HMAC-SHA256", convert_underscores=False,
                                   description="Base64 HMAC-SHA256 of the raw body; comma-separated during "
                                               "a secret rotation")]


@other_routes.get(
    "/v1/calendar/oauth/callback",
    operation_id="oauthCallback",
    tags=["Cronofy"],
    summary="OAuth callback (browser redirect from Cronofy)",
    description=(
        "Verifies the `state` (signature, expiry, single use, and the browser-binding cookie set by "
        "`POST /v1/calendar/connect`), exchanges the code, lists the account's writable calendars and creates a "
        "push channel. One writable calendar is selected at once; several leave the connection "
        "`pending_calendar`. Always a 302 to the web app (`{WebAppUrl}{return_to or /profile}`) with "
        "`calendar_sync=connected|choose_calendar|error` and, on error, `reason=access_denied | invalid_state | "
        "state_expired | state_used | state_not_for_this_browser | code_exchange_failed | "
        "calendar_service_unavailable | no_writable_calendar | already_connected | account_in_use | "
        "internal_error` (`account_in_use`: another SolarNexus user connected that calendar account). Nothing is "
        "stored on a failure."
    ),
    responses={
        302: {
            "description": "To the web app with the outcome in the query string; the binding cookie is cleared",
            "headers": {
                "Location": {"description": "e.g. `{WebAppUrl}/profile?calendar_sync=choose_calendar`",
                             "schema": {"type": "string"}},
                "Set-Cookie": {"description": "`sn_calendar_oauth=; Max-Age=0`", "schema": {"type": "string"}},
            },
        },
    },
)
def oauth_callback(
    code: Annotated[str | None, Query(description="Authorization code (on success)")] = None,
    state: Annotated[str | None, Query(description="The signed state from `POST /v1/calendar/connect`")] = None,
    error: Annotated[str | None, Query(description="e.g. `access_denied` when the user clicked Deny")] = None,
    sn_calendar_oauth: Annotated[str | None, Cookie(description="Browser binding set by the connect route")] = None,
) -> None:
    raise NotImplementedError("documentation only: functions/oauth_callback/app.py handles this route")


@other_routes.post(
    "/v1/webhooks/cronofy/<channel_token>",
    operation_id="cronofyNotification",
    tags=["Cronofy"],
    summary="Cronofy push notification",
    description=_WEBHOOK_DESCRIPTION,
    responses=_WEBHOOK_RESPONSES,
)
def cronofy_notification(
    channel_token: str,
    notification: Annotated[CronofyNotification, Body()],
    signature: _SIGNATURE,
) -> None:
    raise NotImplementedError("documentation only: functions/webhook_intake/app.py handles this route")


@other_routes.post(
    "/v1/webhooks/cronofy",
    operation_id="cronofyNotificationWithoutToken",
    tags=["Cronofy"],
    summary="Cronofy push notification (callback URL without a channel token)",
    description=_WEBHOOK_DESCRIPTION + " Channels this service creates always carry a token, so a `change` for "
                                       "a known channel is refused here with 401 `invalid_channel`.",
    responses=_WEBHOOK_RESPONSES,
)
def cronofy_notification_without_token(
    notification: Annotated[CronofyNotification, Body()],
    signature: _SIGNATURE,
) -> None:
    raise NotImplementedError("documentation only: functions/webhook_intake/app.py handles this route")


# ---- the document ---------------------------------------------------------------------------------------


GATEWAY_RESPONSES = {
    401: ("Unauthorized: no session JWT, or the JWT authorizer refused it (issuer, audience, expiry, signature)"),
    429: "Too Many Requests: the stage's throttling limits",
    500: "Internal Server Error: the function failed or timed out",
}


PAYLOAD_TOO_LARGE = "Request Entity Too Large: the request is over API Gateway's 10 MB payload limit"


def _version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _resolver_schema(resolver: APIGatewayHttpResolver) -> dict[str, Any]:
    return json.loads(resolver.get_openapi_json_schema(
        title="SolarNexus Calendar Sync API", version=_version(),
        security_schemes={SECURITY_SCHEME: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}))


def _model_schemas() -> dict[str, Any]:
    _, schemas = models_json_schema([(model, "serialization") for model in RESPONSE_MODELS],
                                    ref_template=REF_PREFIX + "{model}")
    return schemas["$defs"]


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


def _tidy_responses(operation: dict[str, Any], authorized: bool) -> None:
    responses = operation["responses"]
    invalid = responses.get("422")
    if invalid and _refs(invalid) == {REF_PREFIX + "HTTPValidationError"}:
        # Powertools' default for validation errors; the calendar API answers them as `Error`
        # (`invalid_request`), and an operation with no parameters and no body never gets one.
        if operation.get("requestBody") or any(p["in"] != "path" for p in operation.get("parameters", [])):
            responses["422"] = _ref("`invalid_request`: a parameter or the body is not valid", "Error")
        else:
            del responses["422"]
    for status, response in responses.items():
        if status.startswith("3"):
            response.pop("content", None)  # a redirect has no body
    for status, description in GATEWAY_RESPONSES.items():
        if status != 401 or authorized:
            responses.setdefault(str(status), _ref(description, "GatewayError"))
    if operation.get("requestBody"):
        # API Gateway's payload limit (a route whose function has a lower limit documents its own 413)
        responses.setdefault("413", _ref(PAYLOAD_TOO_LARGE, "GatewayError"))
    operation["responses"] = dict(sorted(responses.items()))
    operation["security"] = [{SECURITY_SCHEME: []}] if authorized else []


def build() -> dict[str, Any]:
    """The document, from the route declarations and template.yaml."""
    from functions.calendar_api.app import app as calendar_api
    from functions.enterprise_connect.app import app as enterprise_connect

    merge = OpenAPIMerge(
        title="SolarNexus Calendar Sync API", version=_version(), description=DESCRIPTION,
        security_schemes={SECURITY_SCHEME: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                            "description": "SolarNexus session JWT"}},
        security=[{SECURITY_SCHEME: []}],
        tags=[{"name": "Calendar connection", "description": "The signed-in user's own calendar connection"},
              {"name": "Organization", "description": "What the scheduler shows about the caller's org"},
              {"name": "Enterprise Connect", "description": "An org admin connects members' calendars at once "
                                                           "(Google Workspace, Microsoft 365)"},
              {"name": "Cronofy", "description": "Called by Cronofy or by the browser on Cronofy's behalf (no JWT)"}],
        on_conflict="error")
    merge.add_schema(_resolver_schema(calendar_api))
    merge.add_schema(_resolver_schema(enterprise_connect))
    merge.add_schema(_resolver_schema(other_routes))
    document = merge.get_openapi_schema()

    declared = {(r.method.lower(), r.path): r.authorized for r in template.routes(template.load())}
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    if documented != set(declared):
        raise ValueError(f"template.yaml and the route declarations differ: only in template.yaml "
                         f"{sorted(set(declared) - documented)}, only in the code {sorted(documented - set(declared))}")
    for path, item in document["paths"].items():
        for method, operation in item.items():
            _tidy_responses(operation, declared[(method, path)])

    schemas = document["components"]["schemas"] | _model_schemas()
    # Only what the routes use (Powertools also adds its own validation-error schemas, unused here).
    used, todo = set(), [ref.removeprefix(REF_PREFIX) for ref in _refs(document["paths"])]
    while todo:
        name = todo.pop()
        if name in used:
            continue
        if name not in schemas:
            raise ValueError(f"the document refers to a schema it does not define: {name}")
        used.add(name)
        todo.extend(ref.removeprefix(REF_PREFIX) for ref in _refs(schemas[name]))
    document["components"]["schemas"] = {name: schemas[name] for name in sorted(used)}
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def write_or_check(document: Path, text: str, target: str, argv: list[str]) -> int:
    """Write a generated contract document, or with --check fail when the committed one differs
    (shared with localdev/asyncapi.py)."""
    if "--check" in argv:
        if not document.is_file() or document.read_text() != text:
            print(f"{document.relative_to(ROOT)} is out of date: run `make {target}`", file=sys.stderr)
            return 1
        return 0
    document.parent.mkdir(exist_ok=True)
    document.write_text(text)
    print(f"wrote {document.relative_to(ROOT)}")
    return 0


def main(argv: list[str]) -> int:
    return write_or_check(DOCUMENT, render(build()), "openapi", argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
