"""Webhooks, the pure part: checking a delivery's signature or token, its job input, its idempotency key.

A delivery is authenticated by an HMAC-SHA256 of its raw body under the hook's secret, sent as
`X-Signature-256: sha256=<hex>` (the way GitHub and Stripe sign), or, for a hook made with
`auth: "token"`, by the secret itself as `Authorization: Bearer <secret>`. Both are compared in
constant time (`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping
from typing import Any, Literal

SIGNATURE_HEADER = "x-signature-256"
SIGNATURE_PREFIX = "sha256="
SECRET_BYTES = 32
SECRET_PREFIX = "whsec_"
DROPPED_HEADERS = frozenset({SIGNATURE_HEADER, "authorization", "cookie", "proxy-authorization"})
"""Headers a job's input never carries: the credentials of the delivery, and cookies."""
UNKNOWN_HOOK_SECRET = "whsec_" + "0" * 64
"""Checked against when a hook does not exist, so an unknown id costs what a wrong signature costs."""

HookAuth = Literal["signature", "token"]
HookRespond = Literal["accept", "wait"]


def new_secret() -> str:
    """A fresh secret: 256 random bits in hex, after a prefix that says what it is."""
    return SECRET_PREFIX + secrets.token_hex(SECRET_BYTES)


def signature_digest(header: str | None) -> bytes | None:
    """The digest an `X-Signature-256` value carries: `sha256=` then 64 hex digits (either case, spaces
    around it allowed); None for anything else."""
    if header is None:
        return None
    value = header.strip()
    if value[: len(SIGNATURE_PREFIX)].lower() != SIGNATURE_PREFIX:
        return None
    digits = value[len(SIGNATURE_PREFIX) :]
    if len(digits) != 2 * hashlib.sha256().digest_size:
        return None
    try:
        return bytes.fromhex(digits)
    except ValueError:
        return None


def bearer_value(header: str | None) -> str | None:
    """The credentials of an `Authorization: Bearer <value>` header; None when it is not one."""
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def authentic(
    auth: HookAuth, secret: str, body: bytes, signature: str | None, authorization: str | None
) -> bool:
    """Whether a delivery proves it knows the hook's secret, the way the hook's `auth` says."""
    if auth == "token":
        given = bearer_value(authorization)
        # compare_digest needs equal types; a missing value is still compared, against nothing.
        return hmac.compare_digest((given or "").encode(), secret.encode()) and given is not None
    digest = signature_digest(signature)
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return hmac.compare_digest(digest or b"", expected) and digest is not None


def parsed_body(body: bytes) -> Any:
    """The body as JSON when it is JSON, else its text; None when it is empty."""
    if not body.strip():
        return None
    text = body.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def kept_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers by lower-case name, without the dropped ones; a repeated header's values joined by ', '."""
    kept: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if key in DROPPED_HEADERS:
            continue
        kept[key] = f"{kept[key]}, {value}" if key in kept else value
    return kept


def delivery_input(
    body: bytes, headers: Iterable[tuple[str, str]], query: Mapping[str, str]
) -> dict[str, Any]:
    """The input of the job a delivery starts: `{"body", "headers", "query"}`."""
    return {"body": parsed_body(body), "headers": kept_headers(headers), "query": dict(query)}


def delivery_key(hook_id: str, headers: Mapping[str, str], delivery_id_header: str | None) -> str | None:
    """The idempotency key of a delivery: `webhook:<hook id>:<id>`, the id taken from the hook's
    delivery-id header when it has one and the request carries it, else from `Idempotency-Key`; None
    when neither is there (each delivery then starts a job)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    delivery = lowered.get(delivery_id_header.lower()) if delivery_id_header else None
    delivery = delivery or lowered.get("idempotency-key")
    return f"webhook:{hook_id}:{delivery.strip()}" if delivery and delivery.strip() else None
