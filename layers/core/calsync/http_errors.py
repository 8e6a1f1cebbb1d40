"""The core's refusals as HTTP answers, in one place for the API functions (calendar_api,
enterprise_connect): `{"error": {"code", "message"}}` with a status. The core raises calsync.errors
and never imports this module; the functions install its handlers on their resolver.

Powertools is imported only inside `install` and `response`: the webhook intake uses the answer's
shape alone and keeps its cold start small.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from calsync.errors import (
    ConflictError,
    Forbidden,
    InvalidRequest,
    InvalidState,
    MalformedRequest,
    NotFound,
    Refusal,
    TryLater,
    Unauthenticated,
)

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

STATUS: dict[type[Refusal], int] = {
    MalformedRequest: 400,
    InvalidRequest: 422,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    InvalidState: 409,
    TryLater: 503,
}


@dataclass(frozen=True)
class ApiError:
    """One error answer of the API; with `retry_after` (seconds), it is said in the body and the
    Retry-After header."""

    status: int
    code: str
    message: str
    retry_after: str | None = None

    def body(self) -> dict:
        error = {"code": self.code, "message": self.message}
        return {"error": error | {"retry_after": self.retry_after}} if self.retry_after else {"error": error}


def answer_for(refusal: Refusal) -> ApiError:
    """The answer to a refusal: the status of its kind (the nearest one it derives from)."""
    status = next((STATUS[kind] for kind in type(refusal).__mro__ if kind in STATUS), 400)
    retry_after = str(refusal.retry_after) if isinstance(refusal, TryLater) else None
    return ApiError(status, refusal.code, refusal.message, retry_after)


def response(error: ApiError, headers: dict[str, str] | None = None) -> Response[dict]:
    from aws_lambda_powertools.event_handler import Response, content_types

    return Response(status_code=error.status, content_type=content_types.APPLICATION_JSON, body=error.body(),
                    headers=headers)


def install(app: APIGatewayHttpResolver, conflict_message: str) -> None:
    """Answer the core's refusals, lost races (409 `conflict`, `conflict_message`) and requests the
    resolver's validation refused (422 `invalid_request`) on `app`."""
    from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

    @app.exception_handler(Refusal)
    def _refused(error: Refusal) -> Response[dict]:
        answer = answer_for(error)
        return response(answer, {"Retry-After": answer.retry_after} if answer.retry_after else None)

    @app.exception_handler(ConflictError)
    def _lost_race(error: ConflictError) -> Response[dict]:
        return response(ApiError(409, "conflict", conflict_message))

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response[dict]:
        # Anything else is our bug: logged with its stack, answered in the contract's error shape (API
        # Gateway's own {"message": "Internal Server Error"} is not), with nothing of the error inside.
        from calsync.observability import logger

        logger.exception("unexpected error answering a request")
        return response(ApiError(500, "internal_error", "something went wrong on our side; try again later"))

    @app.exception_handler(RequestValidationError)
    def _invalid_request(error: RequestValidationError) -> Response[dict]:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}" for e in error.errors()
        )
        return response(ApiError(422, "invalid_request", details or "the request is not valid"))


def plain_error(error: ApiError) -> dict:
    """An error answered before routing (the body could not be handed to the resolver)."""
    return {"statusCode": error.status, "headers": {"Content-Type": "application/json"},
            "body": json.dumps(error.body())}


def other_org(event: dict) -> dict | None:
    """The 403 to a request on another org's route (a `{org_id}` path parameter that is not the caller's
    org), else None. Answered before routing, so before the resolver validates the body or query: org
    routes answer 403 for another org (ARCHITECTURE §2) whatever else is wrong with the request, and a
    422 with validation details would answer a stranger. Without a session the route answers (401)."""
    org_id = (event.get("pathParameters") or {}).get("org_id")
    if not org_id:
        return None
    from calsync.caller import caller_from_event

    try:
        caller_from_event(event).require_org(org_id)
    except Forbidden as refusal:
        return plain_error(answer_for(refusal))
    except Refusal:
        return None
    return None


MALFORMED_JSON = MalformedRequest("the request body is not valid JSON", code="malformed_json")


def unreadable_body(event: dict) -> dict | None:
    """The answer to a request whose body is not JSON text, else None. A body that does not parse is a
    400 here, for every JSON route at once: the resolver's validation would answer 422 "JSON decode
    error", as if the JSON were read and found wrong."""
    if not event.get("body"):
        return None
    content_type = {k.lower(): v for k, v in (event.get("headers") or {}).items()}.get("content-type", "")
    if content_type and not content_type.split(";")[0].strip().lower().endswith("json"):
        return plain_error(ApiError(415, "unsupported_media_type", "send the body as application/json"))
    if event.get("isBase64Encoded"):  # API Gateway only encodes bodies that are not text
        return plain_error(ApiError(422, "invalid_request", "the body must be UTF-8 JSON"))
    try:
        json.loads(event["body"])
    except ValueError:
        return plain_error(answer_for(MALFORMED_JSON))
    return None
