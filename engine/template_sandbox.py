"""The Jinja2 environment template expressions run in: it reads only dict keys and list items, calls
nothing, and pays for every operation from the open evaluation budget (engine/budget.py).

Jinja compiles comparisons, `~`, slices and literals to plain Python, out of a sandbox's reach; the code
generator here sends them through the environment instead, where they are costed like the operators
and filters. Validating a workflow (in the gateway) only parses its templates (`check_syntax`); an
expression is compiled where it is first evaluated, and paid for there. Constant folding is off, so
compiling evaluates nothing.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, cast

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.filters import FILTERS, make_attrgetter
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from jinja2.tests import TESTS
from jinja2.utils import _PassArg

from engine.budget import (
    CALL_UNITS,
    ITEM_UNITS,
    READ_UNITS,
    TEXT_UNITS,
    EvaluationBudget,
    arithmetic,
    comparison_cost,
    current_budget,
    list_size,
    text_size,
)

DEFAULT_MAX_OUTPUT_CHARS = 1_000_000
COMPILE_BASE_UNITS = 250_000
COMPILE_UNITS = 6000
"""Compiling an expression the process has not compiled yet costs COMPILE_BASE_UNITS plus this many work
units a character (about 0.25 ms and up to 6 µs a character here); the compiled code is kept."""
MAX_COMPILED = 4096

ALLOWED_FILTERS = frozenset(
    {
        "abs", "capitalize", "count", "d", "default", "dictsort", "first", "float", "int", "items", "join",
        "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr", "replace",
        "reverse", "round", "select", "selectattr", "sort", "string", "sum", "title", "tojson", "trim",
        "truncate", "unique", "upper", "wordcount",
    }
)  # fmt: skip

_FREE_FILTERS = frozenset(
    {
        "abs", "count", "d", "default", "first", "items", "last", "length", "map", "reject", "rejectattr",
        "round", "select", "selectattr",
    }
)  # fmt: skip
"""Filters that read a fixed part of their value; those that go through it item by item (map, select)
are charged per item as their result is taken."""
_TEXT_FILTERS = frozenset({"capitalize", "lower", "string", "title", "trim", "upper"})
"""Filters whose result is about as long as their value's text: refused before they run if too big."""
_VISITING_FILTERS = frozenset({"dictsort", "max", "min", "sort", "unique"})
"""Filters that visit every item in Python, sorting filters also compare each about log2(n) times."""
_SORTING_FILTERS = frozenset({"dictsort", "sort"})
_NUMBER_TESTS = frozenset({"divisibleby", "even", "odd"})
_COMPARISON_TESTS = frozenset(
    {"==", "eq", "equalto", "!=", "ne", ">", "gt", "greaterthan", "ge", ">=", "<", "lt", "lessthan"}
    | {"<=", "le"}
)
_TEXT_TESTS = frozenset({"lower", "upper"})
_NUMBER_TYPES = (int, float, bool)

_COMPARE_OPERATORS: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
    "eq": ("==", lambda a, b: a == b),
    "ne": ("!=", lambda a, b: a != b),
    "gt": (">", lambda a, b: a > b),
    "gteq": (">=", lambda a, b: a >= b),
    "lt": ("<", lambda a, b: a < b),
    "lteq": ("<=", lambda a, b: a <= b),
    "in": ("in", lambda a, b: a in b),
    "notin": ("not in", lambda a, b: a not in b),
}


class Refused(Exception):
    """An operation the template sandbox refuses: a forbidden operator, or output over the limit."""


output_limit: ContextVar[int] = ContextVar("template_output_limit", default=DEFAULT_MAX_OUTPUT_CHARS)


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


def to_text(value: Any) -> str:
    """How a value reads inside text: strings as they are, everything else as JSON."""
    if isinstance(value, str):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


class _BudgetedCodeGenerator(CodeGenerator):
    """Compiles comparisons, `~`, slices and literals to calls of the environment, so they are costed."""

    def visit_Compare(self, node: nodes.Compare, frame: Frame) -> None:
        self.write("environment.compare(")
        self.visit(node.expr, frame)
        for operand in node.ops:
            self.write(f", ({operand.op!r}, lambda: ")
            self.visit(operand.expr, frame)
            self.write(")")
        self.write(")")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.costed_concat((")
        for part in node.nodes:
            self.visit(part, frame)
            self.write(", ")
        self.write("))")

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        if not isinstance(node.arg, nodes.Slice):
            super().visit_Getitem(node, frame)
            return
        self.write("environment.getitem(")
        self.visit(node.node, frame)
        self.write(", slice(")
        for index, bound in enumerate((node.arg.start, node.arg.stop, node.arg.step)):
            self.write(", " if index else "")
            if bound is None:
                self.write("None")
            else:
                self.visit(bound, frame)
        self.write("))")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self._literal(super().visit_List, node, frame)

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx != "load":
            super().visit_Tuple(node, frame)
            return
        self._literal(super().visit_Tuple, node, frame)

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self._literal(super().visit_Dict, node, frame)

    def _literal(self, visit: Callable[[Any, Frame], None], node: nodes.Expr, frame: Frame) -> None:
        self.write("environment.literal(")
        visit(node, frame)
        self.write(")")


class DataOnlySandbox(SandboxedEnvironment):
    """A sandbox that reads only dict keys and list items, calls nothing, and costs every operation."""

    code_generator_class = _BudgetedCodeGenerator
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "**", "%"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        return self.getitem(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Undefined):
            return obj  # the value itself is missing: keep what says why
        if isinstance(obj, Mapping):
            if argument in obj:
                return obj[argument]
            return self.undefined(hint=f"{json_type(obj)} has no field {argument!r}")
        if isinstance(obj, list | tuple | str) and isinstance(argument, slice):
            current_budget().copy(obj, argument, "a slice")
            return obj[argument]
        if isinstance(obj, list | tuple | str) and isinstance(argument, int):
            try:
                return obj[argument]
            except IndexError:
                return self.undefined(hint=f"index {argument} out of range (length {len(obj)})")
        return self.undefined(hint=f"cannot read {argument!r} of a {json_type(obj)}")

    def call(self, context: Context, obj: Any, *args: Any, **kwargs: Any) -> Any:
        raise SecurityError("function calls are not allowed in templates")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            raise Refused("the ** operator is not allowed in templates")
        if operator == "%" and not all(isinstance(v, int | float) for v in (left, right)):
            raise Refused("the % operator works on numbers only")
        if operator == "*":
            _check_repeat(left, right)
        return arithmetic(current_budget(), operator, self.binop_table[operator], left, right)

    def compare(self, left: Any, *operands: tuple[str, Callable[[], Any]]) -> bool:
        """A comparison chain `left op1 right1 op2 right2 ...`; each right side is evaluated only when
        the chain has held so far, as in Python."""
        budget = current_budget()
        for operator, evaluate_right in operands:
            symbol, apply = _COMPARE_OPERATORS[operator]
            right = evaluate_right()
            budget.spend(
                comparison_cost(budget, left, right, symbol.endswith("in")), f"the {symbol} operator"
            )
            if not apply(left, right):
                return False
            left = right
        return True

    def costed_concat(self, parts: tuple[Any, ...]) -> str:
        """`a ~ b ~ c`: the parts as text, refused before it is built if it would not fit. (Not jinja's
        `concat`, which joins a whole template's output chunks and is called with a generator.)"""
        budget = current_budget()
        sizes = [text_size(budget, part) for part in parts]
        budget.build(sum(sizes), "the ~ operator")
        written = sum(size for size, part in zip(sizes, parts, strict=True) if not isinstance(part, str))
        budget.spend(TEXT_UNITS * written, "the ~ operator")
        return "".join(str(part) for part in parts)

    def literal(self, value: Any) -> Any:
        return current_budget().built(value, "a literal")


def _check_repeat(left: Any, right: Any) -> None:
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(times, int):
            size = len(sequence) * times
            if size > output_limit.get():
                raise Refused(f"repeating would make {size} items, over the limit of {output_limit.get()}")


def _capped_join(value: Any, separator: str = "", attribute: str | int | None = None) -> str:
    budget = current_budget()
    items = list(value)
    if len(separator) * max(0, len(items) - 1) > output_limit.get():
        raise Refused(f"join would produce more than {output_limit.get()} characters")
    budget.spend(ITEM_UNITS * len(items), "join")
    if attribute is not None:
        items = [ENV.getitem(item, attribute) for item in items]
    texts = [item if isinstance(item, str) else _budgeted_text(item, "join") for item in items]
    size = sum(len(text) for text in texts) + len(separator) * max(0, len(texts) - 1)
    budget.build(size, "join")
    return separator.join(texts)


def _capped_replace(value: Any, old: str, new: str, count: int | None = None) -> str:
    text = _budgeted_text(value, "replace")
    budget = current_budget()
    budget.spend(READ_UNITS * len(text), "replace")
    found = text.count(old)
    occurrences = found if count is None or count < 0 else min(count, found)
    size = len(text) + occurrences * (len(new) - len(old))
    if size > output_limit.get():
        raise Refused(f"replace would produce more than {output_limit.get()} characters")
    budget.build(size, "replace")
    return text.replace(old, new, -1 if count is None else count)


def _budgeted_text(value: Any, what: str) -> str:
    """`to_text(value)`, refused before it is written if it would not fit."""
    if isinstance(value, str):
        return value
    budget = current_budget()
    size = budget.size(value)
    budget.check_size(size, what)
    budget.spend(TEXT_UNITS * size, what)
    return to_text(value)


def _budgeted_tojson(value: Any) -> str:
    return _budgeted_text(value, "tojson")


def _budgeted_sum(iterable: Any, attribute: str | int | None = None, start: Any = 0) -> Any:
    """Jinja's `sum`. Numbers are added by Python's `sum`; anything else one item at a time with the
    costed `+`, so a list start cannot grow quadratically for free."""
    if isinstance(start, str):
        raise TypeError("sum() can't sum strings [use ''.join(seq) instead]")
    budget = current_budget()
    items = list(iterable)
    budget.spend(ITEM_UNITS * len(items), "sum")
    if attribute is not None:
        getter = make_attrgetter(ENV, attribute)
        items = [getter(item) for item in budget.counted(iter(items), "sum")]
    if isinstance(start, int | float) and all(type(item) in _NUMBER_TYPES for item in items):
        return budget.built(sum(items, start), "sum")
    total = start
    for item in budget.counted(iter(items), "sum"):
        total = arithmetic(budget, "+", ENV.binop_table["+"], total, item)
    return total


def _filter_cost(budget: EvaluationBudget, name: str, value: Any, args: tuple[Any, ...]) -> int:
    """What a filter reads (its value and arguments) and, for those that go through a list item by item
    in Python, its items; sorting compares each item about log2(n) times."""
    if name in _FREE_FILTERS:
        return CALL_UNITS
    if name in _TEXT_FILTERS and not isinstance(value, str):
        return CALL_UNITS + TEXT_UNITS * budget.size(value)
    cost = CALL_UNITS + READ_UNITS * sum(text_size(budget, argument) for argument in (value, *args))
    if name in _VISITING_FILTERS and isinstance(value, Mapping | list | tuple):
        rounds = max(1, math.ceil(math.log2(len(value) + 1))) if name in _SORTING_FILTERS else 1
        cost = cost * rounds + CALL_UNITS * len(value)
    return cost


def _predicted_size(budget: EvaluationBudget, name: str, value: Any) -> int | None:
    if name in _TEXT_FILTERS:
        return text_size(budget, value)
    if name == "list" and isinstance(value, str):
        return list_size(3 * len(value), len(value))
    if name == "reverse" and isinstance(value, str):
        return len(value)
    return None


def _budgeted_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """`function` with its cost charged before it runs, and its result admitted after (taken item by
    item when it is lazy); a free filter returns part of its value, which needs no new check."""
    skip = 1 if _PassArg.from_obj(function) is not None else 0

    @functools.wraps(function)
    def costed(*args: Any, **kwargs: Any) -> Any:
        budget = current_budget()
        value, rest = args[skip] if len(args) > skip else None, args[skip + 1 :]
        budget.spend(_filter_cost(budget, name, value, (*rest, *kwargs.values())), name)
        predicted = _predicted_size(budget, name, value)
        if predicted is not None:
            budget.build(predicted, name)
        result = function(*args, **kwargs)
        if isinstance(result, Iterator):
            return budget.counted(result, name)
        return result if name in _FREE_FILTERS else budget.built(result, name)

    return costed


def _budgeted_test(name: str, function: Callable[..., bool]) -> Callable[..., bool]:
    skip = 1 if _PassArg.from_obj(function) is not None else 0

    def costed(*args: Any) -> bool:
        budget = current_budget()
        value, rest = args[skip], args[skip + 1 :]
        if name in _NUMBER_TESTS and not all(isinstance(v, int | float) for v in (value, *rest)):
            raise Refused(f"the {name} test works on numbers only")
        budget.spend(CALL_UNITS, f"the {name} test")
        if name in _COMPARISON_TESTS or name == "in":
            budget.spend(comparison_cost(budget, value, rest[0], name == "in"), f"the {name} test")
        elif name in _TEXT_TESTS:
            budget.spend(TEXT_UNITS * text_size(budget, value), f"the {name} test")
        return function(*args)

    return functools.update_wrapper(costed, function)


def _build_environment() -> DataOnlySandbox:
    env = DataOnlySandbox(undefined=StrictUndefined, autoescape=False, optimized=False)
    env.globals.clear()
    functions: dict[str, Callable[..., Any]] = {name: FILTERS[name] for name in ALLOWED_FILTERS}
    functions.update(join=_capped_join, replace=_capped_replace, tojson=_budgeted_tojson, sum=_budgeted_sum)
    custom = {"join", "replace", "tojson", "sum"}
    env.filters = {
        name: function if name in custom else _budgeted_filter(name, function)
        for name, function in functions.items()
    }
    # jinja2's TESTS is a dict literal of differently typed functions, which mypy joins to `function`.
    tests = cast("dict[str, Callable[..., bool]]", TESTS)
    env.tests = {name: _budgeted_test(name, function) for name, function in tests.items()}
    return env


ENV = _build_environment()
_compiled: dict[str, Callable[..., Any]] = {}


def check_syntax(source: str) -> None:
    """Parse an expression without compiling it (a workflow's validation does this in the gateway):
    TemplateSyntaxError when it is malformed or names a filter or test that does not exist."""
    parser = Parser(ENV, source, state="variable")
    expression = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError("chunk after expression", parser.stream.current.lineno)
    for node in expression.find_all((nodes.Filter, nodes.Test)):
        kind, known = ("filter", ENV.filters) if isinstance(node, nodes.Filter) else ("test", ENV.tests)
        if node.name not in known:
            raise TemplateSyntaxError(f"No {kind} named {node.name!r}.", node.lineno)


def compiled(source: str, budget: EvaluationBudget) -> Callable[..., Any]:
    """The compiled expression: compiled (and paid for) the first time this process evaluates it."""
    found = _compiled.get(source)
    if found is None:
        budget.spend(COMPILE_BASE_UNITS + COMPILE_UNITS * len(source), "compiling the template")
        found = ENV.compile_expression(source, undefined_to_none=False)
        if len(_compiled) >= MAX_COMPILED:
            del _compiled[next(iter(_compiled))]
        _compiled[source] = found
    return found
