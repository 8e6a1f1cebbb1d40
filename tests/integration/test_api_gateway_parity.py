"""What a caller would notice between the local router and API Gateway: the 10 MB payload limit, and
the unknown-field policy of the OpenAPI document, followed by the real handlers (issue 22, item 8)."""

from __future__ import annotations

import json

import pytest
import requests

from localdev.api_gateway import MAX_PAYLOAD_BYTES

ORG = "org_sunbright"


def _body_of_size(size: int) -> bytes:
    """A JSON body of exactly `size` bytes (valid JSON, so only its size is wrong)."""
    head, tail = b'{"provider": "google", "return_to": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_a_body_over_10_mb_gets_api_gateways_413_and_no_function_runs(stack):
    session = stack.browser("u_jane", ORG)
    before = dict(stack.invocations)
    resp = session.post(stack.url("/v1/calendar/connect"), data=_body_of_size(12 * 1024 * 1024),
                        headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    assert resp.json() == {"message": "Request Entity Too Large"}  # GatewayError, as documented
    assert stack.invocations == before
    # The limit itself still reaches the function (which refuses the oversized field on its own terms).
    resp = session.post(stack.url("/v1/calendar/connect"), data=_body_of_size(MAX_PAYLOAD_BYTES),
                        headers={"Content-Type": "application/json"})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_request"
    assert stack.invocations["CalendarApiFunction"] == before["CalendarApiFunction"] + 1
    # and the router still answers afterwards
    assert session.get(stack.url("/v1/calendar/connection")).json() == {"state": "not_connected"}


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("POST", "/v1/calendar/connect", {"provider": "google", "returnTo": "/profile"}, "returnTo"),
    ("PUT", "/v1/calendar/connection", {"calendar_id": "cal_1", "calendarId": "cal_1"}, "calendarId"),
    ("POST", f"/v1/orgs/{ORG}/enterprise-connect", {"return_to": "/crew", "domain": "x.example"}, "domain"),
    ("POST", f"/v1/orgs/{ORG}/enterprise-connect/members",
     {"members": [{"user_id": "u_ana", "email": "ana@x.example", "role": "lead"}]}, "role"),
    ("POST", f"/v1/orgs/{ORG}/availability",
     {"user_ids": ["u_jane"], "duration_minutes": 60, "from": "2030-01-07T00:00:00Z",
      "to": "2030-01-08T00:00:00Z", "max_result": 3}, "max_result"),
])
def test_an_unknown_field_is_refused_with_422_naming_it_and_nothing_is_stored(stack, method, path, body, field):
    admin = stack.browser("u_sofia", ORG, roles=["admin", "member"])
    items_before = stack.raw_items()
    resp = admin.request(method, stack.url(path), json=body)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in error["message"], error
    assert stack.raw_items() == items_before
    assert stack.emulator.request_log == []  # nothing reached Cronofy either


def test_the_same_requests_without_the_unknown_field_are_accepted(stack):
    """The refusal above is the unknown field's doing, not the rest of the body's."""
    jane = stack.browser("u_jane", ORG)
    resp = jane.post(stack.url("/v1/calendar/connect"), json={"provider": "google", "return_to": "/profile"})
    assert resp.status_code == 200 and "authorization_url" in resp.json()
    admin = stack.browser("u_sofia", ORG, roles=["admin", "member"])
    assert admin.post(stack.url(f"/v1/orgs/{ORG}/enterprise-connect"), json={"return_to": "/crew"}).status_code == 200


def test_what_cronofy_sends_may_carry_fields_we_do_not_know(stack):
    """Cronofy adds fields without notice: the members' callback tolerates them (documented `true`)."""
    url = stack.url("/v1/enterprise-connect/members/callback")
    resp = requests.post(url, json={"authorization": {"code": "c" * 32, "state": "e30.forged", "new_field": 1},
                                    "sub": "acc_1", "new_top_level": {"x": 1}}, timeout=10)
    assert resp.status_code == 403, resp.text  # refused for its forged state, not for its fields
    assert json.loads(resp.text)["error"]["code"] != "invalid_request"


def test_the_request_log_has_one_line_per_request_and_no_credentials(stack, caplog):
    """`make local`'s request log: method, path, status, ms, function; never a channel token from the
    path, nor an OAuth code or state from the query."""
    caplog.set_level("INFO", logger="localdev.router")
    token = "iWq2OC9k9LhoJMbuNvyUIw"
    requests.post(stack.url(f"/v1/webhooks/cronofy/{token}"), data=b"{}", timeout=10,
                  headers={"Content-Type": "application/json"})
    requests.get(stack.url("/v1/calendar/oauth/callback?code=secret-code&state=secret.state"), timeout=10,
                 allow_redirects=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "localdev.router"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("POST /v1/webhooks/cronofy/{channel_token} 401 ")
    assert lines[0].endswith(" ms WebhookIntakeFunction")
    assert lines[1].startswith("GET /v1/calendar/oauth/callback 302 ") and lines[1].endswith("OAuthCallbackFunction")
    assert not any(secret in "\n".join(lines) for secret in (token, "secret-code", "secret.state"))
