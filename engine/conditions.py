"""Evaluate edge conditions such as `{{classify.output.category}} == 'technical'`.

Each `{{ ... }}` becomes a variable bound to the referenced value, type kept (never text pasted into
code). A quoted string holding templates (`'{{input.name}}' == 'bob'`, `'id-{{input.n}}'`) becomes a
variable bound to the rendered text. The rest is a small Python expression language evaluated by
walking its syntax tree:

- literals: strings, numbers, True/False/None, lists and tuples;
- comparisons `== != < <= > >= in not in`, `is None` / `is not None` (chains allowed);
- `and`, `or`, `not`, unary `-` and `+`; arithmetic `+ - * / // %` (`%` on numbers only, repetition
  of a string or list capped at MAX_SEQUENCE_ITEMS);
- indexing a value: `{{input.items}}[0]`, `{{input.user}}['name']`.

No calls, attributes, `**`, comprehensions, lambdas or names other than the templates. The result is
taken with Python truthiness. Values follow Python semantics: `'5' == 5` is False.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from engine.budget import BudgetExceeded, EvaluationBudget, arithmetic, comparison_cost, evaluation_budget
from engine.errors import ConditionError, TemplateError
from engine.template_sandbox import json_type
from engine.templating import (
    TEMPLATE_RE,
    Expression,
    Reference,
    TemplateContext,
    parse_expression,
    references,
    render_text,
)

MAX_CONDITION_CHARS = 4096
MAX_DEPTH = 50
MAX_SEQUENCE_ITEMS = 100_000

_PY_STRING_RE = re.compile(r"""'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*\"""", re.S)
_VARIABLE_RE = re.compile(r"\b_v\d+\b")
_SHOWN_VALUE_CHARS = 60

_BINARY: dict[type[ast.operator], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
    ast.FloorDiv: ("//", operator.floordiv),
    ast.Mod: ("%", operator.mod),
}
_COMPARE: dict[type[ast.cmpop], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
    ast.In: ("in", lambda a, b: a in b),
    ast.NotIn: ("not in", lambda a, b: a not in b),
    ast.Is: ("is", operator.is_),
    ast.IsNot: ("is not", operator.is_not),
}
_UNARY: dict[type[ast.unaryop], tuple[str, Callable[[Any], Any]]] = {
    ast.Not: ("not", operator.not_),
    ast.USub: ("-", operator.neg),
    ast.UAdd: ("+", operator.pos),
}
_FORBIDDEN_OPERATORS = {
    ast.Pow: "** operators",
    ast.MatMult: "@ operators",
    ast.LShift: "<< operators",
    ast.RShift: ">> operators",
    ast.BitAnd: "& operators",
    ast.BitOr: "| operators",
    ast.BitXor: "^ operators",
    ast.Invert: "~ operators",
}
_CONSTRUCTS: dict[type[ast.AST], str] = {
    ast.Call: "function calls",
    ast.Attribute: "attribute lookups",
    ast.Lambda: "lambdas",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.IfExp: "conditional expressions (x if c else y)",
    ast.JoinedStr: "f-strings",
    ast.NamedExpr: "assignment expressions",
    ast.Dict: "dict literals",
    ast.Set: "set literals",
    ast.Starred: "starred expressions",
    ast.Slice: "slices",
    ast.Await: "await expressions",
    ast.Yield: "yield expressions",
    ast.YieldFrom: "yield expressions",
}
_CONSTANT_TYPES = (str, int, float, bool, type(None))


@dataclass(frozen=True, slots=True)
class _Binding:
    """A variable of the rewritten expression: a typed template, or a quoted text with templates."""

    name: str
    display: str
    expression: Expression | None = None
    text: str | None = None

    def value(self, ctx: TemplateContext) -> Any:
        if self.expression is not None:
            return self.expression.evaluate(ctx)
        return render_text(self.text or "", ctx)


@dataclass(frozen=True, slots=True)
class _Analysis:
    tree: ast.Expression | None
    bindings: tuple[_Binding, ...]
    references: tuple[Reference, ...]
    problems: tuple[str, ...]


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Any) -> str:
    shown = repr(value)
    if len(shown) > _SHOWN_VALUE_CHARS:
        shown = shown[: _SHOWN_VALUE_CHARS - 3] + "..."
    return f"{json_type(value)} {shown}"


def _display(node: ast.AST, shown: Mapping[str, str]) -> str:
    """A part of the condition as the user wrote it: variables shown as their templates."""
    return _shorten(_VARIABLE_RE.sub(lambda m: shown.get(m.group(), m.group()), ast.unparse(node)), 120)


class _Rewriter:
    """Turns the condition text into Python source whose only names are bound variables."""

    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.out: list[str] = []
        self.outside: list[str] = []
        self.bindings: list[_Binding] = []
        self.references: dict[Reference, None] = {}
        self.problems: list[str] = []

    def run(self) -> str:
        expr, i = self.expr, 0
        while i < len(expr):
            if expr.startswith("{{", i):
                template = TEMPLATE_RE.match(expr, i)
                if template is None:
                    self.problems.append("unclosed '{{' (or an unterminated string inside it)")
                    break
                self._bind_template(template)
                i = template.end()
            elif expr[i] in "'\"" and (literal := _PY_STRING_RE.match(expr, i)) is not None:
                self._copy_literal(literal.group())
                i = literal.end()
            else:
                char = " " if expr[i] in "\r\n\t" else expr[i]
                self.out.append(char)
                self.outside.append(char)
                i += 1
        for name in sorted(set(_VARIABLE_RE.findall("".join(self.outside)))):
            self.problems.append(f"the name {name!r} is reserved")
        return "".join(self.out)

    def _new_name(self) -> str:
        return f"_v{len(self.bindings)}"

    def _bind_template(self, template: re.Match[str]) -> None:
        name = self._new_name()
        try:
            expression = parse_expression(template[1])
        except TemplateError as exc:
            self.problems.append(exc.message)
            expression = None
        if expression is not None:
            self.references.update(dict.fromkeys(expression.references))
        self.bindings.append(_Binding(name=name, display=template.group(), expression=expression))
        self.out.append(f" {name} ")

    def _copy_literal(self, literal: str) -> None:
        if "{{" not in literal:
            self.out.append(literal)
            return
        try:
            text = ast.literal_eval(literal)
            self.references.update(dict.fromkeys(references(text)))
        except (SyntaxError, ValueError) as exc:
            self.problems.append(f"bad string literal {_shorten(literal, 60)}: {exc}")
            return
        except TemplateError as exc:
            self.problems.append(exc.message)
        name = self._new_name()
        self.bindings.append(_Binding(name=name, display=literal, text=text))
        self.out.append(f" {name} ")


class _Checker:
    """Collects every construct of the tree that conditions do not allow."""

    def __init__(self, shown: Mapping[str, str]) -> None:
        self.shown = shown
        self.problems: list[str] = []

    def check(self, node: ast.AST, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            self.problems.append(f"the condition is nested too deeply (more than {MAX_DEPTH} levels)")
            return
        children: list[ast.AST] = []
        if isinstance(node, ast.Expression):
            children = [node.body]
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, _CONSTANT_TYPES):
                self._forbid(f"{type(node.value).__name__} literals", node)
        elif isinstance(node, ast.Name):
            if node.id not in self.shown:
                self.problems.append(
                    f"unknown name {node.id!r}: values come from templates like {{{{input.{node.id}}}}}, "
                    f"and text needs quotes ('{node.id}')"
                )
        elif isinstance(node, ast.BoolOp):
            children = list(node.values)
        elif isinstance(node, ast.UnaryOp | ast.BinOp):
            if type(node.op) in _FORBIDDEN_OPERATORS:
                self._forbid(_FORBIDDEN_OPERATORS[type(node.op)], node)
            children = [node.operand] if isinstance(node, ast.UnaryOp) else [node.left, node.right]
        elif isinstance(node, ast.Compare):
            for op, right in zip(node.ops, node.comparators, strict=True):
                if isinstance(op, ast.Is | ast.IsNot) and not (
                    isinstance(right, ast.Constant) and right.value is None
                ):
                    self._forbid("'is' comparisons with anything but None (use == to compare values)", node)
            children = [node.left, *node.comparators]
        elif isinstance(node, ast.List | ast.Tuple):
            children = list(node.elts)
        elif isinstance(node, ast.Subscript):
            children = [node.value, node.slice]
        else:
            construct = _CONSTRUCTS.get(type(node), f"{type(node).__name__} expressions")
            self._forbid(construct, node)
        for child in children:
            self.check(child, depth + 1)

    def _forbid(self, construct: str, node: ast.AST) -> None:
        self.problems.append(f"{construct} are not allowed in conditions: {_display(node, self.shown)}")


@lru_cache(maxsize=4096)
def _analyse(expr: str) -> _Analysis:
    if not expr.strip():
        return _Analysis(None, (), (), ("the condition is empty",))
    if len(expr) > MAX_CONDITION_CHARS:
        return _Analysis(None, (), (), (f"the condition is longer than {MAX_CONDITION_CHARS} characters",))
    rewriter = _Rewriter(expr)
    source = rewriter.run()
    bindings = tuple(rewriter.bindings)
    found = tuple(rewriter.references)
    if rewriter.problems:
        return _Analysis(None, bindings, found, tuple(rewriter.problems))
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        return _Analysis(None, bindings, found, (f"syntax error: {exc.msg}",))
    except (RecursionError, MemoryError):
        return _Analysis(None, bindings, found, ("the condition is nested too deeply",))
    shown = {binding.name: binding.display for binding in bindings}
    checker = _Checker(shown)
    checker.check(tree)
    return _Analysis(tree, bindings, found, tuple(dict.fromkeys(checker.problems)))


def check_condition_syntax(expr: str) -> list[str]:
    """Everything wrong with a condition, found without evaluating it; empty when it is fine."""
    if not isinstance(expr, str):
        return [f"a condition must be a string, got {json_type(expr)}"]
    return list(_analyse(expr).problems)


def condition_references(expr: str) -> list[Reference]:
    """The references of the templates in a condition that parse (check_condition_syntax reports the rest)."""
    return list(_analyse(expr).references) if isinstance(expr, str) else []


def evaluate_condition(expr: str, ctx: TemplateContext) -> bool:
    """Evaluate a condition against the job's values; ConditionError when it is malformed, a reference
    does not resolve, or an operation fails (such as comparing a string with a number)."""
    if not isinstance(expr, str):
        raise ConditionError(f"a condition must be a string, got {json_type(expr)}")
    analysis = _analyse(expr)
    if analysis.tree is None or analysis.problems:
        raise ConditionError(f"invalid condition {_shorten(expr)!r}: {'; '.join(analysis.problems)}")
    with evaluation_budget() as budget:
        values: dict[str, Any] = {}
        try:
            for binding in analysis.bindings:
                values[binding.name] = binding.value(ctx)
        except TemplateError as exc:
            raise ConditionError(f"condition {_shorten(expr)!r}: {exc.message}") from None
        shown = {binding.name: binding.display for binding in analysis.bindings}
        try:
            return bool(_Evaluator(values, shown, budget).eval(analysis.tree.body))
        except (_EvaluationError, BudgetExceeded) as exc:
            raise ConditionError(f"condition {_shorten(expr)!r}: {exc}") from None


class _EvaluationError(Exception):
    pass


class _Evaluator:
    """Evaluates a tree that _Checker accepted."""

    def __init__(self, values: Mapping[str, Any], shown: Mapping[str, str], budget: EvaluationBudget) -> None:
        self.values = values
        self.shown = shown
        self.budget = budget

    def source(self, node: ast.AST) -> str:
        return _display(node, self.shown)

    def eval(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.values[node.id]
        if isinstance(node, ast.BoolOp):
            return self._bool_op(node)
        if isinstance(node, ast.UnaryOp):
            symbol, apply = _UNARY[type(node.op)]
            operand = self.eval(node.operand)
            try:
                return apply(operand)
            except TypeError:
                raise _EvaluationError(f"cannot apply {symbol} to {_describe(operand)}") from None
        if isinstance(node, ast.BinOp):
            return self._binary(node)
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.List):
            return self.budget.built([self.eval(element) for element in node.elts], "a list")
        if isinstance(node, ast.Tuple):
            return self.budget.built(tuple(self.eval(element) for element in node.elts), "a tuple")
        if isinstance(node, ast.Subscript):
            return self._subscript(node)
        raise _EvaluationError(f"cannot evaluate {self.source(node)}")

    def _bool_op(self, node: ast.BoolOp) -> Any:
        result: Any = None
        for operand in node.values:
            result = self.eval(operand)
            if isinstance(node.op, ast.And) != bool(result):
                return result
        return result

    def _binary(self, node: ast.BinOp) -> Any:
        symbol, apply = _BINARY[type(node.op)]
        left, right = self.eval(node.left), self.eval(node.right)
        if isinstance(node.op, ast.Mod) and not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right)
        ):
            raise _EvaluationError(
                f"the % operator works on numbers only, got {_describe(left)} % {_describe(right)}"
            )
        if isinstance(node.op, ast.Mult):
            for sequence, times in ((left, right), (right, left)):
                repeats = isinstance(sequence, str | list | tuple) and isinstance(times, int)
                if repeats and len(sequence) * times > MAX_SEQUENCE_ITEMS:
                    raise _EvaluationError(
                        f"{self.source(node)} would repeat to more than {MAX_SEQUENCE_ITEMS} items"
                    )
        try:
            return arithmetic(self.budget, symbol, apply, left, right)
        except ZeroDivisionError:
            raise _EvaluationError(f"division by zero in {self.source(node)}") from None
        except TypeError:
            raise _EvaluationError(f"cannot compute {_describe(left)} {symbol} {_describe(right)}") from None

    def _compare(self, node: ast.Compare) -> bool:
        left = self.eval(node.left)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            symbol, apply = _COMPARE[type(op)]
            right = self.eval(comparator)
            self.budget.spend(comparison_cost(self.budget, left, right, symbol.endswith("in")), symbol)
            try:
                holds = apply(left, right)
            except TypeError:
                hint = " (the right side must be a string, list or object)" if symbol.endswith("in") else ""
                raise _EvaluationError(
                    f"cannot evaluate {_describe(left)} {symbol} {_describe(right)}{hint}"
                ) from None
            if not holds:
                return False
            left = right
        return True

    def _subscript(self, node: ast.Subscript) -> Any:
        container, key = self.eval(node.value), self.eval(node.slice)
        where = self.source(node.value)
        if isinstance(container, Mapping):
            if not isinstance(key, str) or key not in container:
                raise _EvaluationError(f"{where} has no field {key!r}")
            return container[key]
        if isinstance(container, list | tuple | str) and isinstance(key, int) and not isinstance(key, bool):
            if not -len(container) <= key < len(container):
                raise _EvaluationError(f"index {key} out of range for {where} (length {len(container)})")
            return container[key]
        raise _EvaluationError(f"cannot index {where} ({_describe(container)}) with {_describe(key)}")
