"""OAuth state: signed, expiring, browser-bound (single use is covered with the store)."""

import pytest

from calsync.oauth_state import StateError, StateSigner


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_round_trip_returns_the_claims():
    signer = StateSigner("k1", ttl_seconds=600, clock=Clock())
    state, binding, claims = signer.issue("u_1", "org_1", "google", "/profile")
    verified = signer.verify(state, binding)
    assert (verified.user_id, verified.org_id, verified.provider, verified.return_to) == (
        "u_1", "org_1", "google", "/profile")
    assert verified.nonce == claims.nonce


@pytest.mark.parametrize("mutate", [
    lambda s: s[:-2] + ("AA" if not s.endswith("AA") else "BB"),  # signature altered
    lambda s: "x" + s,  # body altered
    lambda s: s.split(".")[0],  # no signature
    lambda s: "",  # empty
    lambda s: "a.b.c",  # wrong shape
])
def test_forged_state_is_refused(mutate):
    signer = StateSigner("k1", clock=Clock())
    state, binding, _ = signer.issue("u_1", "org_1", "google", None)
    with pytest.raises(StateError) as error:
        signer.verify(mutate(state), binding)
    assert error.value.reason == "invalid_state"


def test_state_signed_with_another_key_is_refused():
    state, binding, _ = StateSigner("other-key", clock=Clock()).issue("u_1", "org_1", "google", None)
    with pytest.raises(StateError, match="invalid_state"):
        StateSigner("k1", clock=Clock()).verify(state, binding)


def test_expired_state_is_refused():
    clock = Clock()
    signer = StateSigner("k1", ttl_seconds=600, clock=clock)
    state, binding, _ = signer.issue("u_1", "org_1", "google", None)
    clock.now += 601
    with pytest.raises(StateError, match="state_expired"):
        signer.verify(state, binding)


def test_state_from_another_browser_is_refused():
    signer = StateSigner("k1", clock=Clock())
    state_a, _, _ = signer.issue("u_a", "org_1", "google", None)
    _, binding_b, _ = signer.issue("u_b", "org_1", "google", None)
    for binding in (binding_b, None, ""):
        with pytest.raises(StateError, match="state_not_for_this_browser"):
            signer.verify(state_a, binding)
