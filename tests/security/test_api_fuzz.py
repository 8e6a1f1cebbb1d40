"""Schemathesis against the API's OpenAPI document (openapi/openapi.json), through the local stack:
generated requests, valid and not, for every route; no 5xx and no response that breaks the document."""

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from localdev.stack import LocalStack

DOCUMENT = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
schema = schemathesis.openapi.from_path(str(DOCUMENT))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api():
    with LocalStack() as stack:
        account = stack.emulator.add_calendar_account("google", "fuzz@example.com",
                                                      calendars=[{"name": "Work", "primary": True}])
        session = stack.browser("u_fuzz", "org_sunbright")
        from tests.helpers import connect

        connect(stack, session, "google", account)
        yield stack, session.headers["Authorization"]


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_and_never_fails(api, case):
    stack, authorization = api
    headers = {"Authorization": authorization}
    if case.path.startswith("/v1/webhooks") or case.path.endswith("/oauth/callback"):
        headers = {}
    case.call_and_validate(base_url=stack.base_url, headers=headers, checks=CHECKS)
