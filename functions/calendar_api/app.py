"""Calendar API for the web app (ARCHITECTURE §2): connect, status, calendars, select/switch,
disconnect, and the org's connection list. Thin: parse, call the connection service, shape."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.shared.cookies import Cookie, SameSite
from pydantic import BaseModel, Field

from calsync import runtime
from calsync.caller import Caller, caller_from_event
from calsync.config import get_settings
from calsync.connections import valid_return_to
from calsync.errors import ApiError
from calsync.oauth_state import BINDING_COOKIE
from calsync.observability import logger

app = APIGatewayHttpResolver(enable_validation=True)


class ConnectRequest(BaseModel):
    provider: Literal["google", "microsoft", "apple"]
    return_to: str | None = Field(default=None, max_length=512)


class SelectCalendarRequest(BaseModel):
    calendar_id: str = Field(min_length=1, max_length=128)


def _error(error: ApiError) -> Response[dict]:
    return Response(status_code=error.status, content_type=content_types.APPLICATION_JSON, body=error.body())


@app.exception_handler(ApiError)
def _api_error(error: ApiError) -> Response[dict]:
    return _error(error)


@app.exception_handler(RequestValidationError)
def _invalid_request(error: RequestValidationError) -> Response[dict]:
    details = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}" for e in error.errors()
    )
    return _error(ApiError(422, "invalid_request", details or "the request is not valid"))


def _caller() -> Caller:
    return caller_from_event(app.current_event.raw_event)


@app.post("/v1/calendar/connect")
def connect(request: Annotated[ConnectRequest, Body()]) -> Response[dict]:
    caller = _caller()
    url, binding = runtime.connection_service().start_connect(
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


@app.get("/v1/calendar/connection")
def get_connection() -> dict:
    return runtime.connection_service().status(_caller())


@app.get("/v1/calendar/calendars")
def list_calendars() -> dict:
    return {"calendars": runtime.connection_service().calendars(_caller())}


@app.put("/v1/calendar/connection")
def select_calendar(request: Annotated[SelectCalendarRequest, Body()]) -> dict:
    return runtime.connection_service().select_calendar(_caller(), request.calendar_id)


@app.delete("/v1/calendar/connection")
def disconnect() -> Response[dict]:
    body = runtime.connection_service().request_disconnect(_caller())
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=body)


@app.get("/v1/orgs/<org_id>/calendar-connections")
def org_connections(org_id: str) -> dict:
    return {"connections": runtime.connection_service().org_connections(_caller(), org_id)}


@app.get("/v1/orgs/<org_id>/busy")
def org_busy(
    org_id: str,
    user_ids: Annotated[str, Query(min_length=1, max_length=30000, description="comma-separated user ids")],
    start: Annotated[datetime, Query(alias="from", description="ISO-8601 UTC")],
    end: Annotated[datetime, Query(alias="to", description="ISO-8601 UTC")],
) -> dict:
    """Teammates' busy intervals (no titles or details) from DynamoDB alone."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ApiError(422, "invalid_request", "from and to need a time zone, e.g. 2026-12-01T00:00:00Z")
    ids = [u.strip() for u in user_ids.split(",") if u.strip()]
    return runtime.busy().for_scheduler(_caller(), org_id, ids, start, end)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
def lambda_handler(event: dict, context) -> dict:
    return app.resolve(event, context)
