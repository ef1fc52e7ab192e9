"""Searching workflows by name the same way in both stores: a substring, ignoring the case of ASCII
letters only (SQLite's lower() folds nothing else, so neither store does)."""

from __future__ import annotations

import re

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


def ascii_case_insensitive_pattern(text: str) -> str:
    """A regular expression matching `text` anywhere, each ASCII letter in either case, all else as is."""
    return "".join(
        f"[{char.lower()}{char.upper()}]" if char.isascii() and char.isalpha() else re.escape(char)
        for char in text
    )
