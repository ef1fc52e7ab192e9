"""The pure part of webhooks: signatures, bearer secrets, the job input and the delivery key, as tables."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from engine.webhooks import (
    SECRET_PREFIX,
    authentic,
    bearer_value,
    delivery_input,
    delivery_key,
    new_secret,
    parsed_body,
    signature_digest,
)

pytestmark = pytest.mark.timeout(10)

SECRET = "whsec_test"
BODY = b'{"action": "opened"}'


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


GOOD = sign(SECRET, BODY)

SIGNATURES = {
    "good": (GOOD, True),
    "upper-case hex and prefix": ("SHA256=" + GOOD[7:].upper(), True),
    "surrounding spaces": (f"  {GOOD} ", True),
    "missing": (None, False),
    "empty": ("", False),
    "no prefix": (GOOD[7:], False),
    "sha1 prefix": ("sha1=" + GOOD[7:], False),
    "one digit short": (GOOD[:-1], False),
    "one digit more": (GOOD + "0", False),
    "not hex": (GOOD[:-2] + "zz", False),
    "another body's": (sign(SECRET, b"{}"), False),
    "another secret's": (sign("whsec_other", BODY), False),
}


@pytest.mark.parametrize(("header", "accepted"), SIGNATURES.values(), ids=SIGNATURES.keys())
def test_a_signature_is_accepted_only_when_it_is_the_bodys_hmac_under_the_secret(header, accepted):
    assert authentic("signature", SECRET, BODY, header, None) is accepted
    assert not authentic("token", SECRET, BODY, header, None), "a token hook ignores signatures"


TOKENS = {
    "good": (f"Bearer {SECRET}", True),
    "scheme in any case": (f"bearer {SECRET}", True),
    "missing": (None, False),
    "no scheme": (SECRET, False),
    "basic": (f"Basic {SECRET}", False),
    "empty bearer": ("Bearer ", False),
    "a prefix of it": (f"Bearer {SECRET[:-1]}", False),
    "longer": (f"Bearer {SECRET}x", False),
}


@pytest.mark.parametrize(("authorization", "accepted"), TOKENS.values(), ids=TOKENS.keys())
def test_a_token_hook_takes_exactly_its_secret_as_bearer_token(authorization, accepted):
    assert authentic("token", SECRET, BODY, None, authorization) is accepted
    assert not authentic("signature", SECRET, BODY, None, authorization), "a signature hook needs a signature"


def test_signature_digest_and_bearer_value_read_only_their_formats():
    assert signature_digest(GOOD) == bytes.fromhex(GOOD[7:])
    assert signature_digest("sha256=") is None
    assert bearer_value("Bearer  abc ") == "abc"
    assert bearer_value("Token abc") is None


@pytest.mark.parametrize(
    ("body", "parsed"),
    [
        (b'{"a": [1, 2]}', {"a": [1, 2]}),
        (b"[1, 2]", [1, 2]),
        (b'"text"', "text"),
        (b"a=1&b=2", "a=1&b=2"),
        (b"not json {", "not json {"),
        (b"", None),
        (b"  \n", None),
    ],
)
def test_the_body_is_json_when_it_is_json_else_its_text(body, parsed):
    assert parsed_body(body) == parsed


def test_the_input_drops_credentials_and_cookies_and_joins_repeated_headers():
    headers = [
        ("Content-Type", "application/json"),
        ("X-Signature-256", GOOD),
        ("Authorization", "Bearer x"),
        ("Proxy-Authorization", "Basic y"),
        ("Cookie", "session=1"),
        ("X-Tag", "a"),
        ("x-tag", "b"),
    ]
    assert delivery_input(BODY, headers, {"source": "crm"}) == {
        "body": {"action": "opened"},
        "headers": {"content-type": "application/json", "x-tag": "a, b"},
        "query": {"source": "crm"},
    }


DELIVERIES = {
    "configured header": ({"X-GitHub-Delivery": "d-1", "Idempotency-Key": "k-1"}, "X-GitHub-Delivery", "d-1"),
    "configured header in another case": ({"x-github-delivery": "d-1"}, "X-GitHub-Delivery", "d-1"),
    "idempotency key when the configured header is absent": ({"Idempotency-Key": "k-1"}, "X-Delivery", "k-1"),
    "idempotency key without a configured header": ({"Idempotency-Key": " k-1 "}, None, "k-1"),
    "neither": ({"X-Other": "1"}, "X-GitHub-Delivery", None),
    "blank": ({"Idempotency-Key": "  "}, None, None),
}


@pytest.mark.parametrize(("headers", "configured", "delivery"), DELIVERIES.values(), ids=DELIVERIES.keys())
def test_the_delivery_key_is_the_configured_header_then_idempotency_key(headers, configured, delivery):
    expected = None if delivery is None else f"webhook:h1:{delivery}"
    assert delivery_key("h1", headers, configured) == expected


def test_new_secrets_are_long_and_different():
    first, second = new_secret(), new_secret()
    assert first != second and first.startswith(SECRET_PREFIX) and len(first) == len(SECRET_PREFIX) + 64
