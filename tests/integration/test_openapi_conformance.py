"""What the routes really answer matches openapi/openapi.json: each status is documented for its
route and each JSON body validates against the documented schema. Also: the local stack serves the
document and Swagger UI."""

import json
import re
from urllib.parse import urlsplit

import pytest
import requests
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from localdev import browser, openapi
from tests.helpers import cal_id

DOCUMENT = json.loads(openapi.DOCUMENT.read_text())
REGISTRY = Registry().with_resource("urn:openapi", DRAFT202012.create_resource(DOCUMENT))


def _operation(method, url_path):
    for path, item in DOCUMENT["paths"].items():
        pattern = "^" + re.sub(r"\{\w+\}", "[^/]+", path) + "$"
        if re.match(pattern, url_path) and method.lower() in item:
            return path, item[method.lower()]
    raise AssertionError(f"{method} {url_path} is not in the document")


def conforms(resp: requests.Response) -> requests.Response:
    """Assert the response is documented for its route and its body matches; returns it."""
    request = resp.request
    path, operation = _operation(request.method, urlsplit(request.url).path)
    status = str(resp.status_code)
    assert status in operation["responses"], f"{request.method} {path} answered {status}: not documented"
    documented = operation["responses"][status]
    if "content" in documented:
        schema = documented["content"]["application/json"]["schema"]
        validator = Draft202012Validator({"$ref": "urn:openapi#" + schema["$ref"].removeprefix("#")},
                                         registry=REGISTRY)
        errors = [e.message for e in validator.iter_errors(resp.json())]
        assert not errors, f"{request.method} {path} {status}: {errors} in {resp.text}"
    return resp


def test_answers_along_the_connection_lifecycle_match_the_document(stack, jane, teammate):
    s = jane["session"]
    api = stack.url
    conforms(s.get(api("/v1/calendar/connection")))
    assert conforms(s.get(api("/v1/calendar/calendars"))).status_code == 404
    assert conforms(s.put(api("/v1/calendar/connection"), json={"calendar_id": "cal_x"})).status_code == 404
    assert conforms(s.post(api("/v1/calendar/connect"), json={"provider": "yahoo"})).status_code == 422
    assert conforms(s.post(api("/v1/calendar/connect"), json={"provider": "google", "return_to": "//x"})
                    ).status_code == 422
    assert conforms(requests.get(api("/v1/calendar/connection"))).status_code == 401
    # connect: the authorization URL, then the callback's redirect
    url = conforms(s.post(api("/v1/calendar/connect"), json={"provider": "google"})).json()["authorization_url"]
    redirected = browser.consent(s, url, jane["work"]["profile_id"])
    callback = next(r for r in redirected.history if urlsplit(r.url).path == "/v1/calendar/oauth/callback")
    assert conforms(callback).status_code == 302 and "calendar_sync=choose_calendar" in callback.headers["Location"]
    assert conforms(s.get(api("/v1/calendar/connection"))).json()["state"] == "pending_calendar"
    assert conforms(s.post(api("/v1/calendar/connect"), json={"provider": "google"})).status_code == 200
    conforms(s.get(api("/v1/calendar/calendars")))
    assert conforms(s.put(api("/v1/calendar/connection"), json={"calendar_id": "cal_nope"})).status_code == 422
    assert conforms(s.put(api("/v1/calendar/connection"), json={})).status_code == 422
    conforms(s.put(api("/v1/calendar/connection"), json={"calendar_id": cal_id(jane["work"], "Installs")}))
    stack.drain()
    status = conforms(s.get(api("/v1/calendar/connection"))).json()
    assert status["state"] == "connected" and status["backfill"]["status"] == "succeeded"
    assert conforms(s.post(api("/v1/calendar/connect"), json={"provider": "google"})).status_code == 409
    # org routes
    admin = stack.browser("u_boss", "org_sunbright", roles=["admin"])
    conforms(admin.get(api("/v1/orgs/org_sunbright/calendar-connections")))
    conforms(teammate["session"].get(api("/v1/orgs/org_sunbright/calendar-connections")))
    assert conforms(admin.get(api("/v1/orgs/org_other/calendar-connections"))).status_code == 403
    busy = "/v1/orgs/org_sunbright/busy?user_ids=u_jane,u_miguel&from=2026-12-01T00:00:00Z&to=2026-12-08T00:00:00Z"
    assert set(conforms(admin.get(api(busy))).json()["users"]) == {"u_jane", "u_miguel"}
    assert conforms(admin.get(api(busy.replace("2026-12-08", "2027-12-08")))).status_code == 422
    assert conforms(admin.get(api("/v1/orgs/org_sunbright/busy?user_ids=u_jane"))).status_code == 422
    crew = {"user_ids": ["u_jane", "u_miguel"], "duration_minutes": 60, "from": "2026-12-07T00:00:00Z",
            "to": "2026-12-12T00:00:00Z", "timezone": "America/Los_Angeles"}
    availability = api("/v1/orgs/org_sunbright/availability")
    assert conforms(s.post(availability, json=crew)).json()["slots"]
    assert conforms(s.post(availability, json=dict(crew, duration_minutes=0))).status_code == 422
    assert conforms(s.post(api("/v1/orgs/org_other/availability"), json=crew)).status_code == 403
    health = api("/v1/orgs/org_sunbright/calendar-health")
    assert [m["user_id"] for m in conforms(admin.get(health)).json()["members"]] == ["u_jane"]
    assert conforms(s.get(health)).status_code == 403
    # disconnect
    assert conforms(s.delete(api("/v1/calendar/connection"))).json() == {"state": "disconnecting"}
    stack.drain()
    assert conforms(s.delete(api("/v1/calendar/connection"))).json() == {"state": "not_connected"}


@pytest.mark.parametrize("body, status", [('{"notification": {"type": "verification"}}', 401),
                                          ("x" * (65 * 1024), 413)])
def test_webhook_refusals_match_the_document(stack, body, status):
    resp = conforms(requests.post(stack.url("/v1/webhooks/cronofy/token"), data=body,
                                  headers={"Cronofy-HMAC-SHA256": "bad"}))
    assert resp.status_code == status


def test_the_local_stack_serves_the_document_and_swagger_ui(stack):
    served = requests.get(stack.url("/openapi.json"))
    assert served.status_code == 200 and served.json() == DOCUMENT
    page = requests.get(stack.url("/docs"))
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js", "docs.js"):
        resp = requests.get(stack.url(f"/docs/{asset}"))
        assert resp.status_code == 200 and len(resp.content) > 100, asset
    assert requests.get(stack.url("/docs/../../template.yaml")).status_code == 404
    assert requests.get(stack.url("/docs/package.json")).status_code == 404
