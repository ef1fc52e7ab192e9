"""Mask secret values before anything reaches logs, events or stored outputs.

This is hygiene, never access control: a job may only read the secrets its owner may use
(engine/secret_access.py), and whatever it can read, its author can print in a form no mask knows
(reversed, sliced, encrypted). Masking catches the common accidents: a value echoed as it is, inside
JSON text, URL-encoded in a query string, or base64-encoded in a Basic auth header or a payload.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_SECRET_CHARS = 4


class Redactor:
    """Replaces every occurrence of every secret value with `***` in any string of a JSON shape.

    Secrets shorter than MIN_SECRET_CHARS are not masked: masking every "a" or "123" would garble
    logs and hide nothing worth hiding. A secret is also masked in its encoded forms (`encoded_forms`).
    Longer forms win where they overlap. Dict keys are
    masked too, so two keys may merge into one "***". Walks dicts, lists, tuples and strings; other
    values pass through as they are. Without secrets, `redact` returns its argument unchanged.
    """

    def __init__(self, secrets: Mapping[str, str], *, min_chars: int = MIN_SECRET_CHARS) -> None:
        forms: set[str] = set()
        for value in secrets.values():
            if isinstance(value, str) and len(value) >= min_chars:
                forms.update(encoded_forms(value, min_chars))
        ordered = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    @property
    def active(self) -> bool:
        """Whether there is anything to mask."""
        return self._pattern is not None

    def redact_text(self, text: str) -> str:
        return text if self._pattern is None else self._pattern.sub(MASK, text)

    def redact(self, value: Any) -> Any:
        return value if self._pattern is None else _redact(value, self._pattern)


def encoded_forms(value: str, min_chars: int = MIN_SECRET_CHARS) -> set[str]:
    """A secret as it reads in text: as it is, JSON-escaped, URL-encoded (path and form style), and
    base64 (standard and URL-safe) wherever it sits in the encoded bytes (`base64_cores`)."""
    forms = {value, json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(value)[1:-1]}
    forms |= {quote(value), quote(value, safe=""), quote_plus(value), quote_plus(value, safe="")}
    for core in base64_cores(value.encode()):
        forms |= {core, core.replace("+", "-").replace("/", "_")}
    return {form for form in forms if len(form) >= min_chars}


def base64_cores(raw: bytes) -> list[str]:
    """The base64 characters that depend on `raw` alone, for each of the three positions it may start
    at in a longer encoded text (`user:secret` in a Basic auth header): character i encodes bits
    6i..6i+5 of the whole text, so it is the same whatever surrounds `raw` exactly when those bits
    all belong to `raw`."""
    cores = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        first = -(-8 * shift // 6)
        last = 8 * (shift + len(raw)) // 6
        cores.append(encoded[first:last])
    return cores


def _redact(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(MASK, value)
    if isinstance(value, Mapping):
        return {
            (_redact(k, pattern) if isinstance(k, str) else k): _redact(v, pattern) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact(v, pattern) for v in value]
    if isinstance(value, tuple):
        return tuple(_redact(v, pattern) for v in value)
    return value
