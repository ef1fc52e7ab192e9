"""Both stores read back what they write, and a row they cannot read never breaks a listing.

Writes: a record nested deeper than MAX_STORED_DEPTH is refused with NestingTooDeepError before any of
it is stored, so every JSON document a store writes is one its reader parses (pydantic-core's parser
gives up at 200 levels; the record's own wrapping is counted in the depth).

Reads: a row that cannot be parsed (damaged by hand, or written by a version that did not check
nesting) is left out of every listing and of `get_jobs`, so a page, the job manager's recovery and the
gateway's metrics watcher go on without it; a read of that one record by id raises
UnreadableRecordError. Each such row is logged once per process, with its id, and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from engine.errors import NestingTooDeepError, UnreadableRecordError
from engine.nesting import MAX_STORED_DEPTH, value_too_deep

logger = logging.getLogger(__name__)

R = TypeVar("R")
T = TypeVar("T")

READ_ERRORS = (ValueError, TypeError, KeyError, RecursionError)
"""What parsing a damaged row raises: bad JSON, a failed validation, a missing field, too deep a value."""


def check_storable(value: Any, what: str) -> None:
    """Refuse to store `value` (a record, or the parts of one write) when it nests too deep to read back."""
    if value_too_deep(value, MAX_STORED_DEPTH):
        raise NestingTooDeepError(
            f"{what} is nested deeper than the store's limit of {MAX_STORED_DEPTH} levels"
        )


class UnreadableRows:
    """The rows one store instance met that it cannot read, by kind and id."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()

    @property
    def count(self) -> int:
        return len(self._seen)

    def parse_one(self, kind: str, row_id: str, parse: Callable[[R], T], row: R) -> T:
        """`parse(row)`, or UnreadableRecordError naming the record when the row cannot be read."""
        try:
            return parse(row)
        except READ_ERRORS as exc:
            self._note(kind, row_id, exc)
            raise UnreadableRecordError(
                f"{kind} {row_id} is stored but cannot be read (its record is damaged or nested too deep); "
                "the service logged it for the operator"
            ) from None

    def parse_each(
        self, kind: str, rows: Iterable[R], row_id: Callable[[R], str], parse: Callable[[R], T]
    ) -> list[T]:
        """Every row that can be read, parsed, in order; the others left out."""
        parsed = []
        for row in rows:
            try:
                parsed.append(parse(row))
            except READ_ERRORS as exc:
                self._note(kind, row_id(row), exc)
        return parsed

    def _note(self, kind: str, row_id: str, error: BaseException) -> None:
        if (kind, row_id) in self._seen:
            return
        self._seen.add((kind, row_id))
        logger.error(
            "%s %s is stored but cannot be read (listings leave it out, a read of it answers 409): %s: %s",
            kind,
            row_id,
            type(error).__name__,
            str(error)[:500],
            extra={"unreadable_kind": kind, "unreadable_id": row_id},
        )
