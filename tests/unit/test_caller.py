import pytest

from calsync.caller import caller_from_event, parse_roles
from calsync.errors import Forbidden, Unauthenticated
from calsync.http_errors import answer_for


@pytest.mark.parametrize("value, expected", [
    (["admin", "member"], {"admin", "member"}),
    ("[admin member]", {"admin", "member"}),
    ('["admin","member"]', {"admin", "member"}),
    ("[member]", {"member"}),
    ("admin", {"admin"}),
    ("[]", set()),
    (None, set()),
])
def test_roles_claim_in_both_forms(value, expected):
    assert parse_roles(value) == frozenset(expected)


def test_caller_needs_user_and_org():
    event = {"requestContext": {"authorizer": {"jwt": {"claims": {"sub": "u_1"}}}}}
    with pytest.raises(Unauthenticated) as error:
        caller_from_event(event)
    assert answer_for(error.value).status == 401


def test_caller_from_http_api_claims():
    event = {"requestContext": {"authorizer": {"jwt": {"claims": {
        "sub": "u_1", "org_id": "org_9", "roles": "[admin member]"}}}}}
    caller = caller_from_event(event)
    assert (caller.user_id, caller.org_id, caller.is_admin) == ("u_1", "org_9", True)
    with pytest.raises(Forbidden) as error:
        caller.require_org("org_other")
    assert answer_for(error.value).status == 403
