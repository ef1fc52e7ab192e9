"""Mask secret values before anything reaches logs, events or stored outputs."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
MIN_SECRET_CHARS = 4


class Redactor:
    """Replaces every occurrence of every secret value with `***` in any string of a JSON shape.

    Secrets shorter than MIN_SECRET_CHARS are not masked: masking every "a" or "123" would garble
    logs and hide nothing worth hiding. A secret is also masked in its JSON-escaped form (as it
    appears inside serialized JSON text). Longer secrets win where secrets overlap. Dict keys are
    masked too, so two keys may merge into one "***". Walks dicts, lists, tuples and strings; other
    values pass through as they are. Without secrets, `redact` returns its argument unchanged.
    """

    def __init__(self, secrets: Mapping[str, str], *, min_chars: int = MIN_SECRET_CHARS) -> None:
        forms: set[str] = set()
        for value in secrets.values():
            if isinstance(value, str) and len(value) >= min_chars:
                forms.add(value)
                forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
                forms.add(json.dumps(value)[1:-1])
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
