"""The one mapping from the core's refusals to API answers (calsync.http_errors)."""

import json

import pytest

from calsync.errors import (
    EnterpriseConnectNotActive,
    Forbidden,
    InvalidRequest,
    InvalidState,
    MalformedRequest,
    NeedsReauth,
    NotFound,
    TryLater,
    Unauthenticated,
)
from calsync.http_errors import answer_for, other_org, unreadable_body


@pytest.mark.parametrize("refusal, status, code", [
    (MalformedRequest("m", code="invalid_callback"), 400, "invalid_callback"),
    (Unauthenticated("m"), 401, "unauthorized"),
    (Forbidden(), 403, "forbidden"),
    (NotFound("m"), 404, "not_found"),
    (InvalidState("m"), 409, "conflict"),
    (NeedsReauth("m"), 409, "needs_reauth"),
    (EnterpriseConnectNotActive("m"), 409, "enterprise_connect_not_active"),
    (InvalidRequest("m"), 422, "invalid_request"),
    (InvalidRequest("m", code="invalid_email"), 422, "invalid_email"),
    (TryLater("m", retry_after=3), 503, "rate_limited"),
])
def test_each_kind_has_its_status_and_code(refusal, status, code):
    answer = answer_for(refusal)
    assert (answer.status, answer.code) == (status, code)


def test_the_body_is_code_and_message_and_retry_after_only_when_said():
    assert answer_for(Forbidden()).body() == {"error": {"code": "forbidden", "message": "not allowed for this user"}}
    assert answer_for(TryLater("try again", retry_after=5)).body() == {
        "error": {"code": "rate_limited", "message": "try again", "retry_after": "5"}}


@pytest.mark.parametrize("event, status", [
    ({"body": "{}", "headers": {"Content-Type": "text/plain"}}, 415),
    ({"body": "e30=", "headers": {"content-type": "application/json"}, "isBase64Encoded": True}, 422),
    ({"body": "{}", "headers": {"content-type": "application/json; charset=utf-8"}}, None),
    ({"body": "{\"user_ids\": [", "headers": {"content-type": "application/json"}}, 400),
    ({"body": "not json", "headers": {}}, 400),
    ({"headers": {"content-type": "text/plain"}}, None),
])
def test_bodies_that_are_not_json_text_are_answered_before_routing(event, status):
    answer = unreadable_body(event)
    assert (answer and answer["statusCode"]) == status
    if answer:
        assert set(json.loads(answer["body"])["error"]) == {"code", "message"}


def _org_event(caller_org: str | None, path_org: str | None) -> dict:
    claims = {"sub": "u_1", "org_id": caller_org} if caller_org else {}
    return {"pathParameters": {"org_id": path_org} if path_org else None, "body": "{not json",
            "requestContext": {"authorizer": {"jwt": {"claims": claims}}}}


@pytest.mark.parametrize("caller_org, path_org, status", [
    ("org_a", "org_b", 403),  # another org: 403 before the body is even looked at
    ("org_a", "org_a", None),  # the caller's own org: the route validates (422 and so on)
    ("org_a", None, None),  # not an org route
    (None, "org_b", None),  # no session: the route answers 401
])
def test_another_orgs_route_is_refused_before_routing(caller_org, path_org, status):
    answer = other_org(_org_event(caller_org, path_org))
    assert (answer and answer["statusCode"]) == status
    if answer:
        assert json.loads(answer["body"])["error"]["code"] == "forbidden"


def test_a_body_that_does_not_parse_is_a_400_saying_so():
    answer = unreadable_body({"body": "{\"a\": 1,,}", "headers": {"content-type": "application/json"}})
    assert answer is not None and answer["statusCode"] == 400
    assert json.loads(answer["body"]) == {"error": {"code": "malformed_json",
                                                    "message": "the request body is not valid JSON"}}
