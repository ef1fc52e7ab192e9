"""Credentials never reach a log line: a filter every handler of config/log_setup.py carries.

What it rewrites to `***`, in a record's message (its arguments merged in), its `extra` fields (nested
dicts and lists included) and its exception and stack text:

- parameters named like a secret, `name=value` as in query strings (`?token=...`, `&api_key=...`) and
  quoted `"name": "value"` pairs as in JSON or a dict's repr, and text values of such `extra` fields and
  dict keys (numbers stay: `prompt_tokens` counts are no secret). A name is secret-like when it
  contains token (not tokens), secret, passw(or)d, api_key/apikey, signature, credential, authorization,
  cookie or session, or one of its parts (split at `_`, `-`, `.`) is key, sig, auth, pwd, pass or jwt;
- the value of an `Authorization` (or Proxy-Authorization, X-Api-Key, Cookie) header written as text;
- `Bearer <credentials>`, and anything shaped like a JWT (`eyJ...`.`eyJ...`.`...`).

This is hygiene for what the service writes about requests (uvicorn's access log writes each request's
path with its query string); it cannot recognise a secret that carries no such name or shape.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"
_SECRET_WORDS = re.compile(
    r"token(?!s)|secret|passw(?:or)?d|api_?key|signature|credential|authorization|cookie|session", re.I
)
_SECRET_PARTS = frozenset({"key", "sig", "auth", "pwd", "pass", "jwt"})
_PART_SEPARATORS = re.compile(r"[_.\-]")
_MAYBE_SECRET = re.compile(
    r"token|secret|passw|key|sig|auth|credential|cookie|session|pwd|pass|jwt|bearer|eyJ", re.I
)
_HEADER = re.compile(
    r"(?P<name>\b(?:proxy-)?authorization|\bx-api-key|\bcookie|\bx-(?:hub-)?signature(?:-256)?)(?P<sep>[\"']?\s*:\s*[\"']?)"
    r"(?P<value>[^\"'\r\n]+)",
    re.I,
)
_BEARER = re.compile(r"\b(?P<scheme>bearer)\s+(?P<value>[A-Za-z0-9\-._~+/]{12,}=*)", re.I)
# Names start where a run of name characters starts: tried inside a long run (a JWT), the match would
# backtrack over the rest of the run from every position (123 us for an access log line with a token
# in it, now 8).
_QUOTED_PAIR = re.compile(
    r"(?<![\w.\-])(?P<name>[\w.\-]+)(?P<sep>[\"']?\s*[:=]\s*)(?P<quote>[\"'])(?P<value>(?:\\.|(?!(?P=quote)).)+)(?P=quote)"
)
_PARAMETER = re.compile(r"(?<![\w.\-])(?P<name>[\w.\-]+)=(?P<value>[^&\s\"'<>;,#]+)")
_JWT = re.compile(r"\beyJ[\w\-]{4,}\.eyJ[\w\-]{4,}\.[\w\-]*")
RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
"""A log record's own attributes; any other was given as `extra`."""


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_WORDS.search(name)) or any(
        part in _SECRET_PARTS for part in _PART_SEPARATORS.split(name.lower())
    )


def _masked_if_secret(match: re.Match[str]) -> str:
    if not is_secret_name(match["name"]) or match["value"] == MASK:
        return match[0]
    start, end = match.span("value")
    return match[0][: start - match.start()] + MASK + match[0][end - match.start() :]


def redact_text(text: str) -> str:
    if not _MAYBE_SECRET.search(text):
        return text
    text = _HEADER.sub(lambda m: f"{m['name']}{m['sep']}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m['scheme']} {MASK}", text)
    text = _QUOTED_PAIR.sub(_masked_if_secret, text)
    text = _PARAMETER.sub(_masked_if_secret, text)
    return _JWT.sub(MASK, text)


def redact_field(name: object, value: Any) -> Any:
    """A field's value with every string in it redacted, or masked whole if it is text under a secret-like
    name."""
    if isinstance(value, str | bytes) and isinstance(name, str) and value and is_secret_name(name):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: redact_field(key, item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_field(None, item) for item in value)
    return value


class RedactingFilter(logging.Filter):
    """Rewrites a record in place before any handler formats it (so every handler after it sees the
    redacted record); it never drops one."""

    _exception_formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True  # a broken format string: logging reports it, with the record, as it always does
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        for name, value in list(vars(record).items()):
            if name not in RECORD_ATTRIBUTES:
                setattr(record, name, redact_field(name, value))
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exception_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True
