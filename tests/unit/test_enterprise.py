"""Enterprise Connect's pure rules: the members' signed state, the primary calendar, waiting out the limiter."""

import pytest

from calsync.cronofy import CronofyRateLimited
from calsync.enterprise import MemberStateSigner, _patiently, _primary_writable
from calsync.models import Calendar
from calsync.oauth_state import StateError


def test_member_state_round_trip_and_tampering():
    signer = MemberStateSigner("key")
    state = signer.issue("org_1", "u_1", "g1", "n1")
    assert signer.verify(state) == {"o": "org_1", "u": "u_1", "g": "g1", "n": "n1"}
    body, sig = state.split(".")
    other_sig = sig[:-1] + ("B" if sig[-1] == "A" else "A")
    foreign = MemberStateSigner("other").issue("org_1", "u_1", "g1", "n1")
    for forged in (f"{body}x.{sig}", f"{body}.{other_sig}", foreign, "", None, 42, "a.b.c", "x" * 2000,
                   f"{body}.{sig[:-1]}é", f"{body}.\ud800"):  # non-ASCII: refused, not a crash
        with pytest.raises(StateError):
            signer.verify(forged)


def _cal(cid, primary=False, readonly=False, profile="p1"):
    return Calendar(calendar_id=cid, calendar_name=cid, profile_id=profile, calendar_primary=primary,
                    calendar_readonly=readonly)


def test_primary_writable_calendar_of_the_authorized_profile():
    assert _primary_writable([_cal("a"), _cal("b", primary=True)], "p1").calendar_id == "b"
    assert _primary_writable([_cal("a"), _cal("b", primary=True, readonly=True)], "p1").calendar_id == "a"
    assert _primary_writable([_cal("b", primary=True, profile="p2")], "p1") is None
    assert _primary_writable([_cal("b", readonly=True)], "p1") is None


def test_patiently_waits_out_the_limiter_within_its_budget():
    slept, answers = [], [CronofyRateLimited("x", retry_after=2), CronofyRateLimited("x", retry_after=3), "ok"]

    def call():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert _patiently(call, budget=10, sleep=slept.append) == "ok" and slept == [2, 3]
    with pytest.raises(CronofyRateLimited):
        _patiently(lambda: (_ for _ in ()).throw(CronofyRateLimited("x", retry_after=4)), budget=10, sleep=slept.append)
