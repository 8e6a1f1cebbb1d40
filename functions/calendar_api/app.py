"""Calendar API for the web app (ARCHITECTURE §2): connect, status, calendars, select/switch,
disconnect, the org's connection list, busy times, crew availability and sync health. Thin: parse,
call the core, shape."""

from __future__ import annotations

import math
from typing import Annotated, Literal, cast

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.shared.cookies import Cookie, SameSite
from pydantic import BaseModel, ConfigDict, Field

from calsync import http_errors, wiring
from calsync.availability import AvailabilityRequest
from calsync.caller import Caller, caller_from_event
from calsync.clock import wire_time
from calsync.config import get_settings
from calsync.connections import valid_return_to
from calsync.cronofy import CronofyAuthError, CronofyError, InvalidGrant, interactive, route_seconds
from calsync.errors import InvalidRequest
from calsync.http_errors import ApiError
from calsync.oauth_state import BINDING_COOKIE
from calsync.observability import logger, metrics

app = APIGatewayHttpResolver(enable_validation=True)
UNAVAILABLE_RETRY_AFTER = 30  # seconds, when Cronofy is down and said nothing


# Unknown body fields are refused (422 `invalid_request` naming the field, as every other invalid
# body): a client's typo (`calendarId`) fails at once instead of being silently ignored. The OpenAPI
# document says so (`additionalProperties: false`).
class ConnectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: Literal["google", "microsoft", "apple"]
    return_to: str | None = Field(default=None, max_length=512)


class SelectCalendarRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calendar_id: str = Field(min_length=1, max_length=128)


http_errors.install(app, conflict_message="the connection changed meanwhile; try again")


@app.exception_handler(InvalidGrant)
@app.exception_handler(CronofyAuthError)
def _authorization_gone(error: CronofyError) -> Response[dict]:
    return http_errors.response(
        ApiError(409, "needs_reauth", "the calendar authorization must be renewed: connect again"))


@app.exception_handler(CronofyError)
def _calendar_service_unavailable(error: CronofyError) -> Response[dict]:
    """Cronofy down, or the application's request budget spent: never a bare 500."""
    retry_after = getattr(error, "retry_after", None)
    seconds = max(1, math.ceil(retry_after)) if retry_after else UNAVAILABLE_RETRY_AFTER
    logger.warning("calendar service unavailable", extra={"error": type(error).__name__, "retry_after": seconds})
    return http_errors.response(
        ApiError(503, "calendar_service_unavailable",
                 "the calendar service is busy or unavailable right now; try again shortly"),
        headers={"Retry-After": str(seconds)})


def _caller() -> Caller:
    return caller_from_event(app.current_event.raw_event)


def _doc(description: str, schema: str = "Error", **extra) -> OpenAPIResponse:
    """One documented response for the route decorators below (OpenAPI only, no effect on handling;
    the named schemas and the gateway's own 401/429/500 answers are added by localdev/openapi.py)."""
    content = {content_types.APPLICATION_JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return cast(OpenAPIResponse, {"description": description, "content": content, **extra})


_NO_CONNECTION = _doc("`not_found`: the user has no calendar connection")
_OTHER_ORG = _doc("`forbidden`: the user's calendar connection belongs to another org than the session's")
_UNAVAILABLE = _doc(
    "`calendar_service_unavailable`: Cronofy is unavailable, or the application's share of its rate limit is "
    "spent for now; try again after `Retry-After` seconds",
    headers={"Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer"}}})
_MALFORMED_JSON = _doc("`malformed_json`: the request body is not valid JSON")
_CONNECTION_BUSY = _doc(
    "`conflict`: the connection is being disconnected or changed meanwhile (try again); "
    "`needs_reauth`: the calendar authorization is gone, connect again"
)


@app.post(
    "/v1/calendar/connect",
    operation_id="connectCalendar",
    tags=["Calendar connection"],
    summary="Start connecting a calendar",
    description=(
        "Returns Cronofy's authorization URL for the chosen provider; the web app sends the browser there. "
        "Its `state` is signed, names the user and org, expires in 10 minutes and is single-use. The response "
        "also sets an HttpOnly, SameSite=Lax cookie (path `/v1/calendar/oauth`) whose hash is inside the "
        "state: the callback refuses a state completed in another browser, so call this with credentials. "
        "`return_to` is a web-app path the callback redirects to (default `/profile`)."
    ),
    responses={
        200: _doc(
            "The authorization URL (Cache-Control: no-store)",
            "ConnectResponse",
            headers={"Set-Cookie": {"description": "`sn_calendar_oauth`: binds the OAuth flow to this browser",
                                    "schema": {"type": "string"}}},
        ),
        400: _MALFORMED_JSON,
        403: _OTHER_ORG,
        409: _doc("`conflict`: a calendar is already connected (disconnect it first, or choose another calendar); "
                  "`disconnect_in_progress`: the last disconnect is still running, try again shortly"),
        422: _doc("`invalid_request`: unknown provider or malformed body; `invalid_return_to`: not a web-app path"),
    },
)
def connect(request: Annotated[ConnectRequest, Body()]) -> Response[dict]:
    caller = _caller()
    url, binding = wiring.connection_service().start_connect(
        caller, request.provider, valid_return_to(request.return_to)
    )
    settings = get_settings()
    cookie = Cookie(
        name=BINDING_COOKIE,
        value=binding,
        path="/v1/calendar/oauth",
        secure=settings.public_api_url.startswith("https://"),
        http_only=True,
        same_site=SameSite.LAX_MODE,
        max_age=settings.oauth_state_ttl_seconds,
    )
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body={"authorization_url": url},
        cookies=[cookie],
        headers={"Cache-Control": "no-store"},
    )


@app.get(
    "/v1/calendar/connection",
    operation_id="getConnection",
    tags=["Calendar connection"],
    summary="The user's calendar connection",
    description=(
        "State (`not_connected`, `pending_calendar`, `syncing`, `connected`, `needs_reauth`, `disconnecting`), "
        "provider, account, calendar, times, backfill progress and the last error. Poll it while `syncing` or "
        "`disconnecting`."
    ),
    responses={200: _doc("The connection's status (only `state` when not connected)", "ConnectionStatus"),
               403: _OTHER_ORG},
)
def get_connection() -> dict:
    return wiring.connection_service().status(_caller())


@app.get(
    "/v1/calendar/calendars",
    operation_id="listCalendars",
    tags=["Calendar connection"],
    summary="Writable calendars of the connected account",
    description=(
        "The calendars a connection can use: writable ones of the account the user authorized. Read from Cronofy "
        "at most once a minute per user (then served from a short cache)."
    ),
    responses={200: _doc("The calendars", "CalendarList"), 403: _OTHER_ORG, 404: _NO_CONNECTION,
               409: _CONNECTION_BUSY, 503: _UNAVAILABLE},
)
def list_calendars() -> dict:
    return {"calendars": wiring.connection_service().calendars(_caller())}


@app.put(
    "/v1/calendar/connection",
    operation_id="selectCalendar",
    tags=["Calendar connection"],
    summary="Choose or switch the calendar",
    description=(
        "Selects the calendar SolarNexus events go to. The connection turns `syncing` while a backfill fills "
        "it (or, after a switch, moves every SolarNexus event from the previous calendar), then `connected`."
    ),
    responses={
        200: _doc("The connection's status after the choice", "ConnectionStatus"),
        400: _MALFORMED_JSON,
        403: _OTHER_ORG,
        404: _NO_CONNECTION,
        409: _CONNECTION_BUSY,
        422: _doc("`invalid_request`: no `calendar_id`; `calendar_not_writable`: not a writable calendar of "
                  "the connected account"),
        503: _UNAVAILABLE,
    },
)
def select_calendar(request: Annotated[SelectCalendarRequest, Body()]) -> dict:
    return wiring.connection_service().select_calendar(_caller(), request.calendar_id)


@app.delete(
    "/v1/calendar/connection",
    operation_id="disconnectCalendar",
    tags=["Calendar connection"],
    summary="Disconnect the calendar",
    description=(
        "Answers at once; then every SolarNexus event is removed from the calendar, the push channel closed, "
        "the authorization revoked and the tokens deleted. Safe to repeat."
    ),
    responses={
        202: _doc("`disconnecting` (cleanup queued), or `not_connected` when there was nothing to disconnect",
                  "DisconnectResponse"),
        403: _OTHER_ORG,
        409: _doc("`conflict`: the connection changed meanwhile; try again"),
    },
)
def disconnect() -> Response[dict]:
    body = wiring.connection_service().request_disconnect(_caller())
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=body)


@app.get(
    "/v1/orgs/<org_id>/calendar-connections",
    operation_id="listOrgConnections",
    tags=["Organization"],
    summary="Who in the org has a connected calendar",
    description=(
        "The scheduler's sync icon. Everyone sees each user's state; calendar and account names only for "
        "org admins and for the caller's own row."
    ),
    responses={200: _doc("The org's connections", "OrgConnections"),
               403: _doc("`forbidden`: another org than the caller's")},
)
def org_connections(org_id: str) -> dict:
    return {"connections": wiring.connection_service().org_connections(_caller(), org_id)}


@app.get(
    "/v1/orgs/<org_id>/busy",
    operation_id="getOrgBusy",
    tags=["Organization"],
    summary="Teammates' busy times",
    description=(
        "Busy intervals from the users' own (non-SolarNexus) events, merged and clipped to `from`..`to` (at most "
        "62 days), with no titles or details; \"Show as Free\" events are not busy. Answered from stored blocks "
        "alone. A user who is not connected, or not in the org, has `[]`. At most 200 users."
    ),
    responses={
        200: _doc("Busy intervals per requested user", "BusyResponse"),
        403: _doc("`forbidden`: another org than the caller's"),
        422: _doc("`invalid_request`: missing or malformed `user_ids`, `from`, `to`; no time zone; `to` not "
                  "after `from`; span or user count too large"),
    },
)
def org_busy(
    org_id: str,
    user_ids: Annotated[
        str,
        Query(min_length=1, max_length=9000, pattern=r"^[A-Za-z0-9_.:@,-]+$", description="comma-separated user ids"),
    ],
    start: Annotated[str, Query(alias="from", max_length=40, description="ISO-8601 UTC")],
    end: Annotated[str, Query(alias="to", max_length=40, description="ISO-8601 UTC")],
) -> dict:
    """Teammates' busy intervals (no titles or details) from DynamoDB alone."""
    times = {}
    for name, text in (("from", start), ("to", end)):
        try:
            times[name] = wire_time(text)
        except ValueError as error:
            raise InvalidRequest(f"{name}: {error}") from error
    ids = [u.strip() for u in user_ids.split(",") if u.strip()]
    return wiring.busy().for_scheduler(_caller(), org_id, ids, times["from"], times["to"])


@app.post(
    "/v1/orgs/<org_id>/availability",
    operation_id="findCrewAvailability",
    tags=["Organization"],
    summary="The first slots when a crew is free",
    description=(
        "Slots of `duration_minutes` between `from` and `to` (at most 62 days; never before now: a `from` in the "
        "past searches from the time of the request) when all of `user_ids` "
        "(`required: \"all\"`) or any N of them are free, in time order, at most `max_results`. A member is busy "
        "during their calendar's busy blocks and their scheduled SolarNexus assignments (except "
        "`ignore_milestone_id`, the milestone being rescheduled), widened by `buffer_minutes`, and free only in "
        "their working hours in their own time zone (their calendar account's; `timezone` for members whose zone "
        "is not known). Candidate starts are each member's working-hours start (local) plus whole multiples of "
        "`slot_interval_minutes` within their working hours, for all members together, in time order (a crew "
        "working from 08:00 gets 08:00, 08:30, ... in any zone; 1440 gives 08:00 on each working day). Members "
        "without a connection count as free in working hours; `members` says, per member, whether their data can be "
        "trusted (`connected`, `as_of`, `stale`; `stale` too when `to` goes past the 60 days ahead their busy "
        "blocks are kept, where busy time is unknown, not free). Answered from stored data alone: no calendar "
        "provider is called. At most 50 members."
    ),
    responses={
        200: _doc("Slots and the members' data freshness", "AvailabilityResponse"),
        400: _MALFORMED_JSON,
        403: _doc("`forbidden`: another org than the caller's"),
        422: _doc("`invalid_request`: e.g. duration not positive, `to` not after `from`, span over 62 days, more "
                  "than 50 users, `required` above the crew size, unknown time zone, malformed working hours"),
    },
)
def org_availability(org_id: str, request: Annotated[AvailabilityRequest, Body()]) -> dict:
    return wiring.availability().find(_caller(), org_id, request)


@app.get(
    "/v1/orgs/<org_id>/calendar-health",
    operation_id="getOrgCalendarHealth",
    tags=["Organization"],
    summary="Sync health of the org's calendars (admins)",
    description=(
        "For org admins: every member with a calendar connection, with state, provider, calendar, last "
        "successful sync, last error (reason and time), backfill progress, `stale` (no refresh from the calendar "
        "for a while, the push channel unconfirmed for over a day (`push_channel_unconfirmed`), or the "
        "authorization is gone), the number of SolarNexus events kept on their calendar and their open conflicts "
        "(an assigned milestone, not over yet, that their own busy time overlaps: as sent in "
        "`calendar.conflict_detected`). Answered from stored data alone."
    ),
    responses={
        200: _doc("Per-member sync health", "CalendarHealthResponse"),
        403: _doc("`forbidden`: another org than the caller's, or the caller is not an org admin"),
    },
)
def org_calendar_health(org_id: str) -> dict:
    return wiring.sync_health().for_org(_caller(), org_id)


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
def lambda_handler(event: dict, context) -> dict:
    refused = http_errors.other_org(event) or http_errors.unreadable_body(event)
    if refused is not None:
        return refused
    # A person waits: queue work keeps its share of Cronofy's limit, and Cronofy's waits end in time for
    # a clear answer before Lambda's or API Gateway's timeout.
    with interactive(route_seconds(context)):
        return app.resolve(event, context)
