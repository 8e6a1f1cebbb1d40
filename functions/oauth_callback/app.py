"""OAuth callback (GET /v1/calendar/oauth/callback): the browser arrives here from Cronofy.

No JWT on this route (it is a redirect from Cronofy): the signed, single-use, browser-bound
`state` says who the user is. Every outcome is a 302 to the web app with the result in the
query string; never a stack trace.
"""

from __future__ import annotations

from aws_lambda_powertools.logging import correlation_paths

from calsync import wiring
from calsync.config import get_settings
from calsync.cronofy import interactive, route_seconds
from calsync.oauth_state import BINDING_COOKIE, binding_cookie
from calsync.observability import logger, metrics

_PARAMS = ("code", "state", "error")



@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
def lambda_handler(event: dict, context) -> dict:
    query = event.get("queryStringParameters") or {}
    params = {k: query[k] for k in _PARAMS if query.get(k)}
    try:
        # A person waits: queue work keeps its share of Cronofy's limit, and Cronofy's waits end in time
        # for the redirect (Lambda's timeout would answer a bare 5xx instead).
        with interactive(route_seconds(context)):
            location = wiring.connection_service().complete_oauth(params, binding_cookie(event))
    except Exception:  # noqa: BLE001 - the browser must always land back on the web app
        logger.exception("oauth callback failed")
        location = f"{get_settings().web_app_url}/profile?calendar_sync=error&reason=internal_error"
    return {
        "statusCode": 302,
        "headers": {"Location": location, "Cache-Control": "no-store"},
        # The binding cookie has done its job: clear it.
        "cookies": [f"{BINDING_COOKIE}=; Path=/v1/calendar/oauth; Max-Age=0; HttpOnly; SameSite=Lax"],
        "body": "",
    }
