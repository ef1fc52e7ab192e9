"""The budget of one evaluation: how big a value templates and conditions may build, and how much work
they may do in all.

A value's size is its JSON size with every appearance of a shared part counted again (`[x] * 1000` is
a thousand x's), since that is what comparing, serialising or copying it walks; text counts one byte
per character. Every value built must fit in `MAX_VALUE_BYTES`.

Work is counted in units of about a nanosecond of this machine's time (measured on the 2-core
development machine), so that `MAX_WORK` bounds how long one evaluation holds its event loop:

| what an operation does                                   | units          |
|----------------------------------------------------------|----------------|
| reads a byte in C (compare, search, join, change case)   | READ_UNITS     |
| builds a byte of a value (also bounds the memory built)  | BUILD_UNITS    |
| writes a byte as JSON or as Python text (tojson, `~`)    | TEXT_UNITS     |
| visits an item in a Python loop (measuring, copying)     | ITEM_UNITS     |
| hands an item to a filter or test (map, select, sum)     | CALL_UNITS     |

Costs are charged before an operation runs wherever they can be known, so an operation over the budget
never starts. One budget covers one render of a node's config (all its templates share it) or one
node's conditions: `evaluation_budget()` opens one, or joins the one already open.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

MAX_VALUE_BYTES = 8 * 2**20
MAX_WORK = 128 * 2**20
READ_UNITS = 1
BUILD_UNITS = 4
TEXT_UNITS = 16
ITEM_UNITS = 200
CALL_UNITS = 1000
POINTER_BYTES = 8
MAX_INT_DIGITS = 4300
"""Python refuses to write integers longer than this as text (and so as JSON)."""

_DIGITS_PER_BIT = math.log10(2)


class BudgetExceeded(Exception):
    """An evaluation would go over its budget. The evaluators turn this into their own error."""


class EvaluationBudget:
    """The work one evaluation has spent, against its limits."""

    __slots__ = ("max_value_bytes", "max_work", "used")

    def __init__(self, max_value_bytes: int = MAX_VALUE_BYTES, max_work: int = MAX_WORK) -> None:
        self.max_value_bytes = max_value_bytes
        self.max_work = max_work
        self.used = 0

    def spend(self, units: int, what: str) -> None:
        """Charge `units` for `what`; BudgetExceeded once the total is over the work budget (and for
        everything after that)."""
        self.used += max(0, units)
        if self.used > self.max_work:
            raise BudgetExceeded(f"{what} exceeds the template budget of {self.max_work} work units")

    def check_size(self, size: int, what: str) -> None:
        """Refuse a value of `size` bytes before it is built."""
        if size > self.max_value_bytes:
            raise BudgetExceeded(
                f"{what} would build a value of {size} bytes, which exceeds the template budget of "
                f"{self.max_value_bytes} bytes"
            )

    def build(self, size: int, what: str) -> None:
        """Pay for building a value of `size` bytes, refused if it would not fit."""
        self.check_size(size, what)
        self.spend(BUILD_UNITS * size, what)

    def copy(self, sequence: str | list[Any] | tuple[Any, ...], part: slice, what: str) -> None:
        """Pay for copying `part` of a sequence (a slice) before it is copied: its characters, or its
        items' pointers."""
        count = len(range(*part.indices(len(sequence))))
        self.spend(BUILD_UNITS * count * (1 if isinstance(sequence, str) else POINTER_BYTES), what)

    def built(self, value: Any, what: str) -> Any:
        """Admit a value an operation built, measuring it: it must fit."""
        self.check_size(self.size(value), what)
        return value

    def size(self, value: Any) -> int:
        """The JSON size of `value`; each container in it is walked once (ITEM_UNITS an item)."""
        try:
            return _Measure(self).size(value)
        except RecursionError:
            raise BudgetExceeded("a value is nested too deeply to measure") from None

    def counted(self, items: Iterator[Any], what: str) -> Iterator[Any]:
        """`items`, charging CALL_UNITS for each as it is taken."""
        for item in items:
            self.spend(CALL_UNITS, what)
            yield item


class _Measure:
    """One measurement: a container that appears many times in the value is walked the first time."""

    __slots__ = ("budget", "known")

    def __init__(self, budget: EvaluationBudget) -> None:
        self.budget = budget
        self.known: dict[int, int] = {}

    def size(self, value: Any) -> int:
        if isinstance(value, str):
            return len(value) + 2
        if isinstance(value, bool) or value is None:
            return 5
        if isinstance(value, int):
            digits = int_digits(value)
            _check_digits(digits, "a number")
            return digits + 1
        if isinstance(value, float):
            return len(repr(value))
        if isinstance(value, Mapping | list | tuple):
            known = self.known.get(id(value))
            return known if known is not None else self._walk(value)
        return len(str(value))  # anything else is written as its text; a strict undefined value raises here

    def _walk(self, container: Mapping[Any, Any] | list[Any] | tuple[Any, ...]) -> int:
        self.budget.spend(ITEM_UNITS * (len(container) + 1), "measuring a value")
        items = 0
        if isinstance(container, Mapping):
            for key, item in container.items():
                items += self.size(key) + 2 + self.size(item)
        else:
            for item in container:
                items += len(item) + 2 if type(item) is str else self.size(item)
        total = list_size(items, len(container))
        self.known[id(container)] = total
        return total


def int_digits(value: int) -> int:
    """The number of decimal digits of an integer, without writing it out."""
    return int(abs(value).bit_length() * _DIGITS_PER_BIT) + 1


def list_size(items_bytes: int, count: int) -> int:
    """The JSON size of a list (or object) of `count` items whose own sizes add up to `items_bytes`."""
    return 2 + items_bytes + 2 * max(0, count - 1)


def text_size(budget: EvaluationBudget, value: Any) -> int:
    """About how long `str(value)` or `to_text(value)` is: a string's length, anything else its JSON size."""
    return len(value) if isinstance(value, str) else budget.size(value)


def _repeated_size(budget: EvaluationBudget, sequence: str | list[Any] | tuple[Any, ...], times: int) -> int:
    times = max(0, times)
    if isinstance(sequence, str):
        return len(sequence) * times + 2
    items_bytes = budget.size(sequence) - list_size(0, len(sequence))
    return list_size(items_bytes * times, len(sequence) * times)


def _check_digits(digits: int, what: str) -> None:
    if digits > MAX_INT_DIGITS:
        raise BudgetExceeded(f"{what} has more than {MAX_INT_DIGITS} digits")


def _result_size(budget: EvaluationBudget, symbol: str, left: Any, right: Any) -> int | None:
    """The size of what `left symbol right` builds when it may be big (text, lists); None for numbers."""
    if symbol == "*":
        for sequence, times in ((left, right), (right, left)):
            if isinstance(sequence, str | list | tuple) and isinstance(times, int):
                return _repeated_size(budget, sequence, times)
        if isinstance(left, int) and isinstance(right, int):
            _check_digits(int_digits(left) + int_digits(right), f"what the {symbol} operator makes")
    if symbol == "+" and isinstance(left, str | list | tuple) and type(left) is type(right):
        if isinstance(left, str):
            return len(left) + len(right) + 2
        return budget.size(left) + budget.size(right)
    return None


def arithmetic(
    budget: EvaluationBudget, symbol: str, apply: Callable[[Any, Any], Any], left: Any, right: Any
) -> Any:
    """`apply(left, right)` for the operator `symbol`; refused before it runs if its result would not fit."""
    size = _result_size(budget, symbol, left, right)
    if size is not None:
        budget.build(size, f"the {symbol} operator")
        return apply(left, right)
    result = apply(left, right)
    if isinstance(result, int):
        _check_digits(int_digits(result), f"what the {symbol} operator makes")
    return result


_CONTAINERS = (str, list, tuple, Mapping)


def comparison_cost(budget: EvaluationBudget, left: Any, right: Any, membership: bool) -> int:
    """What comparing two values (`membership`: `left in right`) may read: the smaller side for an order
    or equality, the needle and the haystack for `in`, the key for a lookup in an object."""
    if membership:
        if isinstance(right, Mapping):
            return READ_UNITS * budget.size(left)
        if isinstance(right, str | list | tuple):
            return READ_UNITS * (budget.size(left) + budget.size(right))
        return READ_UNITS
    if isinstance(left, _CONTAINERS) and isinstance(right, _CONTAINERS):
        return READ_UNITS * min(budget.size(left), budget.size(right))
    return READ_UNITS


_current: ContextVar[EvaluationBudget | None] = ContextVar("evaluation_budget", default=None)


@contextmanager
def evaluation_budget(max_work: int = MAX_WORK) -> Iterator[EvaluationBudget]:
    """The budget open in this context, or a new one (of `max_work` units) for the duration of the block."""
    budget = _current.get()
    if budget is not None:
        yield budget
        return
    budget = EvaluationBudget(max_work=max_work)
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def current_budget() -> EvaluationBudget:
    """The open budget; every way into the evaluators opens one first."""
    budget = _current.get()
    if budget is None:
        raise RuntimeError("no evaluation budget is open")
    return budget
