"""Cronofy push-notification signatures and per-user channel tokens (calsync.push_signature)."""

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from calsync import push_signature
from calsync.connections import ConnectionService

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "reference" / "cronofy-fixtures"
VECTORS = json.loads((FIXTURES / "hmac_test_vectors.json").read_text())
BODY = VECTORS["body"].encode()
PUBLISHED = VECTORS["published_vectors"]
DOCS_SECRET = "CRN_NggYusqPGLxwjw5FHOJYOqSrTPNXy8WQf14OID"
ROTATION_SECRETS = [v["client_secret"] for v in PUBLISHED if v["client_secret"].startswith("CRN_")]
DERIVED = {name: value for name, value in VECTORS["derived_vectors_for_fixture_files"].items() if name != "note"}


@pytest.mark.parametrize("vector", PUBLISHED, ids=lambda v: v["client_secret"][:8])
def test_every_published_vector_is_accepted(vector):
    assert push_signature.signature_valid(vector["expected"], BODY, [vector["client_secret"]])


@pytest.mark.parametrize("vector", PUBLISHED, ids=lambda v: v["client_secret"][:8])
def test_a_vector_is_refused_under_another_secret(vector):
    others = [v["client_secret"] for v in PUBLISHED if v is not vector]
    assert not push_signature.signature_valid(vector["expected"], BODY, others)


@pytest.mark.parametrize("name", sorted(DERIVED))
def test_derived_vectors_of_the_fixture_notifications(name):
    # The files are compact with no trailing newline: the signature covers exactly these bytes.
    body = (FIXTURES / name).read_bytes()
    assert push_signature.signature_valid(DERIVED[name], body, [DOCS_SECRET])
    assert not push_signature.signature_valid(DERIVED[name], body + b"\n", [DOCS_SECRET])


def test_rotation_header_is_accepted_by_either_secret_alone():
    header = VECTORS["rotation_header_example"]
    assert len(ROTATION_SECRETS) == 2
    for secret in ROTATION_SECRETS:
        assert push_signature.signature_valid(header, BODY, [secret])
    assert push_signature.signature_valid(header, BODY, ROTATION_SECRETS)


def test_rotation_header_with_the_valid_value_second_and_spaces():
    first, second = VECTORS["rotation_header_example"].split(",")
    # Only the second value is ours (the first was signed with a secret we no longer have)
    assert push_signature.signature_valid(f"{first},{second}", BODY, [ROTATION_SECRETS[1]])
    assert push_signature.signature_valid(f"  {first} ,\t{second}  ", BODY, [ROTATION_SECRETS[1]])
    assert push_signature.signature_valid(f",{second},", BODY, [ROTATION_SECRETS[1]])


def test_several_secrets_of_ours_during_our_own_rotation():
    header = PUBLISHED[0]["expected"]
    assert push_signature.signature_valid(header, BODY, ["old-secret-no-longer-used", DOCS_SECRET])
    assert not push_signature.signature_valid(header, BODY, [])
    assert not push_signature.signature_valid(header, BODY, [""])


GOOD = PUBLISHED[0]["expected"]


@pytest.mark.parametrize("header", [
    None,
    "",
    "   ",
    ",",
    ",,, ,",
    GOOD[:-1],  # truncated
    GOOD[:-2],  # truncated, padding gone
    GOOD[:20],
    GOOD.lower(),  # tampered
    GOOD[:-3] + ("A" if GOOD[-3] != "A" else "B") + GOOD[-2:],
    "é" + GOOD[1:],  # non-ASCII
    GOOD + "é",
    "\u2028" + GOOD,
    GOOD + GOOD,
    "sha256=" + GOOD,
    base64.b64encode(hmac.new(DOCS_SECRET.encode(), BODY, hashlib.sha256).hexdigest().encode()).decode(),
], ids=repr)
def test_malformed_or_tampered_headers_are_refused_without_raising(header):
    assert push_signature.signature_valid(header, BODY, [DOCS_SECRET]) is False


def test_a_tampered_body_is_refused():
    assert not push_signature.signature_valid(GOOD, BODY + b" ", [DOCS_SECRET])
    assert not push_signature.signature_valid(GOOD, BODY.replace(b"known", b"KNOWN"), [DOCS_SECRET])
    assert not push_signature.signature_valid(GOOD, b"", [DOCS_SECRET])


def test_the_url_safe_alphabet_is_not_cronofys():
    vector = next(v for v in PUBLISHED if "/" in v["expected"] or "+" in v["expected"])
    url_safe = vector["expected"].replace("+", "-").replace("/", "_")
    assert push_signature.signature_valid(url_safe, BODY, [vector["client_secret"]]) is False


def test_a_non_string_header_is_refused():
    assert push_signature.signature_valid(GOOD.encode(), BODY, [DOCS_SECRET]) is False  # type: ignore[arg-type]


# ---- channel tokens ------------------------------------------------------------------------------


def _original_derivation(signing_key: str, user_id: str) -> str:
    """ConnectionService.channel_token as it was written before it moved to calsync.push_signature."""
    digest = hmac.new(signing_key.encode(), f"channel:{user_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def _service(signing_key: str) -> ConnectionService:
    return ConnectionService(None, None, None, None, None, None, signing_key)  # type: ignore[arg-type]


@pytest.mark.parametrize("signing_key", ["local-state-signing-key", "k", "ключ-🔑"])
@pytest.mark.parametrize("user_id", ["u_jane", "u_miguel", "00000000-0000-0000-0000-000000000000", "ü"])
def test_channel_token_is_what_connection_service_puts_in_callback_urls(signing_key, user_id):
    token = push_signature.channel_token(signing_key, user_id)
    assert token == _service(signing_key).channel_token(user_id)
    assert token == _original_derivation(signing_key, user_id)
    assert token == push_signature.channel_token(signing_key, user_id)  # stable
    assert len(token) == 22 and "=" not in token
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_channel_tokens_differ_per_user_and_per_key():
    tokens = {push_signature.channel_token(key, user) for key in ("a", "b") for user in ("u_1", "u_2", "u_3")}
    assert len(tokens) == 6


def test_channel_token_check():
    token = push_signature.channel_token("key", "u_jane")
    assert push_signature.channel_token_valid("key", "u_jane", token)
    assert not push_signature.channel_token_valid("key", "u_miguel", token)
    assert not push_signature.channel_token_valid("other-key", "u_jane", token)
    for presented in (None, "", token[:-1], token + "A", token.upper(), "é" * 22, "\ud800"):
        assert push_signature.channel_token_valid("key", "u_jane", presented) is False
