"""Render `{{ ... }}` templates inside node configs.

What a template can say:
- a reference: `{{input.x}}`, `{{node-id.output.items[0].name}}`, `{{input['odd key']}}`, `{{secrets.NAME}}`.
  Node ids may contain hyphens (`{{my-node.output.x}}`); field names are identifiers, other keys use
  `['...']`, indexes are integers (`[-1]` counts from the end). A subtraction needs spaces: `{{input.a - 1}}`.
- an expression over references with Jinja2 syntax: operators (`+ - * / // ~`, `%` on numbers, comparisons,
  `x if c else y`), literals and the filters in `ALLOWED_FILTERS` (`{{ input.name | upper }}`,
  `{{ input.nick | default('anon') }}`). There are no functions, no attribute access to Python objects
  (only dict keys and list indexes) and no `**`; `{% %}` and `{# #}` are plain text. A literal `{{` is
  written `{{ '{{' }}`.

How a value renders:
- a string that is exactly one template (`"{{ input.n }}"`) becomes the value itself, type kept;
- a template inside text renders as text: strings as they are, every other value as JSON
  (`null`, `true`, `3`, `{"a": 1}`);
- strings without `{{` pass through untouched; dict keys are never rendered.

Plain references are resolved here (fast, with messages that say what is missing); anything else is
evaluated by a Jinja2 SandboxedEnvironment that sees only the referenced values. The text one render()
call produces is capped (`max_output_chars`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined
from jinja2.filters import FILTERS
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from engine.errors import TemplateError

DEFAULT_MAX_OUTPUT_CHARS = 1_000_000
MAX_EXPRESSION_CHARS = 4096
INPUT_ROOT = "input"
SECRETS_ROOT = "secrets"
ITEM_ROOT = "item"
INDEX_ROOT = "index"
LOCAL_ROOTS = frozenset({ITEM_ROOT, INDEX_ROOT})
"""Names a map node binds for each item it fans out: `{{item...}}` and `{{index}}`."""
OUTPUT_FIELD = "output"

ALLOWED_FILTERS = frozenset(
    {
        "abs", "capitalize", "count", "d", "default", "dictsort", "first", "float", "int", "items", "join",
        "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr", "replace",
        "reverse", "round", "select", "selectattr", "sort", "string", "sum", "title", "tojson", "trim",
        "truncate", "unique", "upper", "wordcount",
    }
)  # fmt: skip

# `{{ ... }}` whose inside may hold quoted strings containing braces.
TEMPLATE_RE = re.compile(r"""\{\{((?:[^'"}]|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\}(?!\}))*)\}\}""", re.S)
_STRING_RE = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""", re.S)
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_SEGMENT = rf"""\.{_IDENT}|\[\s*(?:-?\d+|'[^'\\]*'|"[^"\\]*")\s*\]"""
_REFERENCE_RE = re.compile(rf"(?P<root>[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)(?P<path>(?:{_SEGMENT})*)")
_SEGMENT_RE = re.compile(
    rf"""\.(?P<field>{_IDENT})|\[\s*(?:(?P<index>-?\d+)|'(?P<sq>[^']*)'|"(?P<dq>[^"]*)")\s*\]"""
)
_NUMBER_RE = re.compile(r"\d[\d_]*(?:[eE][+-]?\d+)?")
_TEST_POSITION_RE = re.compile(r"\bis(?:\s+not)?\s*$")
_KEYWORDS = frozenset(
    {"and", "or", "not", "in", "is", "if", "else", "true", "false", "none", "True", "False", "None"}
)
_MAX_LISTED_FIELDS = 10

PathSegment = str | int


@dataclass(frozen=True, slots=True)
class TemplateContext:
    """What templates can read: the job input, the outputs of finished nodes (node id -> output), secrets,
    and inside a map node the current `item` and its `index` (`locals`)."""

    input: Mapping[str, Any] = field(default_factory=dict)
    nodes: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    locals: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reference:
    """One value a template reads. `root` is "input", "secrets" or a node id; for a node, `path` starts
    with "output"."""

    root: str
    path: tuple[PathSegment, ...]
    text: str

    @property
    def node_id(self) -> str | None:
        return None if self.root in (INPUT_ROOT, SECRETS_ROOT) or self.root in LOCAL_ROOTS else self.root


class _Unresolved(Exception):
    """A reference points at something that is not there."""


class _Refused(Exception):
    """An operation the template sandbox refuses: a forbidden operator, or output over the limit."""


_output_limit: ContextVar[int] = ContextVar("template_output_limit", default=DEFAULT_MAX_OUTPUT_CHARS)


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


def _a(value: Any) -> str:
    kind = json_type(value)
    return kind if value is None else f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def to_text(value: Any) -> str:
    """How a value reads inside text: strings as they are, everything else as JSON."""
    if isinstance(value, str):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def _format_path(where: str, segment: PathSegment) -> str:
    if isinstance(segment, int):
        return f"{where}[{segment}]"
    return f"{where}.{segment}" if segment.isidentifier() else f"{where}[{segment!r}]"


def _list_keys(keys: Sequence[str]) -> str:
    shown = ", ".join(str(k) for k in keys[:_MAX_LISTED_FIELDS])
    more = len(keys) - _MAX_LISTED_FIELDS
    return f"{shown}, ... ({more} more)" if more > 0 else shown or "none"


def _step(value: Any, segment: PathSegment, where: str, missing_field: str) -> Any:
    if isinstance(segment, int):
        if not isinstance(value, list | tuple):
            raise _Unresolved(f"{where} is {_a(value)}, not a list: cannot use index [{segment}]")
        if not -len(value) <= segment < len(value):
            raise _Unresolved(f"index {segment} out of range for {where} (length {len(value)})")
        return value[segment]
    if isinstance(value, Mapping):
        if segment not in value:
            raise _Unresolved(f"{missing_field} {segment!r} (fields: {_list_keys(list(value))})")
        return value[segment]
    hint = f" (use an index like {where}[0])" if isinstance(value, list | tuple) else ""
    raise _Unresolved(f"{where} is {_a(value)}, not an object: cannot read field {segment!r}{hint}")


def resolve(reference: Reference, ctx: TemplateContext) -> Any:
    """The value a reference points at; TemplateError naming what is missing when it does not resolve."""
    try:
        return _resolve(reference, ctx)
    except _Unresolved as exc:
        raise TemplateError(f"template {{{{{reference.text}}}}}: {exc}") from None


def _resolve(reference: Reference, ctx: TemplateContext) -> Any:
    root, path = reference.root, reference.path
    if root == INPUT_ROOT:
        value, where, missing = ctx.input, INPUT_ROOT, "input has no field"
    elif root in LOCAL_ROOTS:
        if root not in ctx.locals:
            raise _Unresolved(f"{{{{{root}}}}} is only defined inside a map node's per-item config")
        value, where, missing = ctx.locals[root], root, f"{root} has no field"
    elif root == SECRETS_ROOT:
        if path[0] not in ctx.secrets:
            raise _Unresolved(
                f"no secret named {path[0]!r} that this job may use (its owner's own secrets, then the "
                "operator's secrets granted to its owner)"
            )
        value, where, path = ctx.secrets[path[0]], f"secrets.{path[0]}", path[1:]
        missing = f"{where} has no field"
    else:
        if root not in ctx.nodes:
            raise _Unresolved(
                f"unknown node {root!r}, or it has no output yet "
                f"(nodes with output: {_list_keys(list(ctx.nodes))})"
            )
        value, where, path = ctx.nodes[root], f"{root}.{OUTPUT_FIELD}", path[1:]
        missing = f"node {root!r} has no output field"
    for segment in path:
        value = _step(value, segment, where, missing)
        where = _format_path(where, segment)
        missing = f"{where} has no field"
    return value


def _parse_path(path_text: str) -> tuple[PathSegment, ...]:
    segments: list[PathSegment] = []
    for match in _SEGMENT_RE.finditer(path_text):
        if match["field"] is not None:
            segments.append(match["field"])
        elif match["index"] is not None:
            segments.append(int(match["index"]))
        else:
            segments.append(match["sq"] if match["sq"] is not None else match["dq"])
    return tuple(segments)


def _make_reference(root: str, path_text: str, source: str) -> Reference:
    path = _parse_path(path_text)
    text = root + path_text
    if root == SECRETS_ROOT:
        if not path or not isinstance(path[0], str):
            raise TemplateError(
                f"template {{{{{source}}}}}: secrets are read one by name: {{{{secrets.NAME}}}}"
            )
    elif root != INPUT_ROOT and root not in LOCAL_ROOTS and (not path or path[0] != OUTPUT_FIELD):
        raise TemplateError(
            f"template {{{{{source}}}}}: {text!r} is not something a template can read: a node's output is "
            f"{{{{{root}.output...}}}}, the job input {{{{input...}}}}, a secret {{{{secrets.NAME}}}}"
        )
    return Reference(root=root, path=path, text=text)


def _reads_value(source: str, start: int, root: str, path_text: str) -> bool:
    """Whether the name at `start` reads a value, rather than being a keyword, number, filter, test or
    keyword argument. A called name is an error: templates have no functions."""
    if root in _KEYWORDS or _NUMBER_RE.fullmatch(root):
        return False
    if start > 0 and source[start - 1] == ".":
        return False
    before = source[:start].rstrip()
    if before.endswith("|") or _TEST_POSITION_RE.search(before):
        return False
    after = source[start + len(root) + len(path_text) :].lstrip()
    if after.startswith("("):
        raise TemplateError(
            f"template {{{{{source}}}}}: function calls are not allowed in templates: {root}{path_text}(...)"
        )
    return not (after.startswith("=") and not after.startswith("=="))


def _rewrite(source: str) -> tuple[str, dict[str, Reference]]:
    """Replace every reference in a Jinja expression by a variable (`_r0`, `_r1`, ...)."""
    out: list[str] = []
    names: dict[str, Reference] = {}
    by_text: dict[str, str] = {}
    i, length = 0, len(source)
    while i < length:
        char = source[i]
        if char in "'\"":
            string = _STRING_RE.match(source, i)
            if string is None:
                raise TemplateError(f"template {{{{{source}}}}}: unterminated string")
            out.append(string.group())
            i = string.end()
            continue
        starts_name = i == 0 or not (source[i - 1].isalnum() or source[i - 1] in "_-")
        match = _REFERENCE_RE.match(source, i) if starts_name else None
        if match is not None:
            root, path_text = match["root"], match["path"]
            if not _reads_value(source, i, root, path_text):
                out.append(root)
                i += len(root)
                continue
            text = match.group()
            if text not in by_text:
                by_text[text] = f"_r{len(by_text)}"
                names[by_text[text]] = _make_reference(root, path_text, source)
            out.append(by_text[text])
            i = match.end()
            continue
        out.append(char)
        i += 1
    return "".join(out), names


class _DataOnlySandbox(SandboxedEnvironment):
    """A sandbox that reads only dict keys and list items, calls nothing, and caps repetition."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        return self.getitem(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Mapping):
            if argument in obj:
                return obj[argument]
            return self.undefined(hint=f"{json_type(obj)} has no field {argument!r}")
        if isinstance(obj, list | tuple | str) and isinstance(argument, int | slice):
            try:
                return obj[argument]
            except IndexError:
                return self.undefined(hint=f"index {argument} out of range (length {len(obj)})")
        return self.undefined(hint=f"cannot read {argument!r} of a {json_type(obj)}")

    def call(self, context: Context, obj: Any, *args: Any, **kwargs: Any) -> Any:
        raise SecurityError("function calls are not allowed in templates")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            raise _Refused("the ** operator is not allowed in templates")
        if operator == "%" and not all(isinstance(v, int | float) for v in (left, right)):
            raise _Refused("the % operator works on numbers only")
        if operator == "*":
            _check_repeat(left, right)
        return self.binop_table[operator](left, right)


def _check_repeat(left: Any, right: Any) -> None:
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(times, int):
            size = len(sequence) * times
            if size > _output_limit.get():
                raise _Refused(f"repeating would make {size} items, over the limit of {_output_limit.get()}")


def _capped_join(value: Any, separator: str = "", attribute: str | int | None = None) -> str:
    items = list(value)
    if len(separator) * max(0, len(items) - 1) > _output_limit.get():
        raise _Refused(f"join would produce more than {_output_limit.get()} characters")
    if attribute is not None:
        items = [_ENV.getitem(item, attribute) for item in items]
    return separator.join(to_text(item) for item in items)


def _capped_replace(value: Any, old: str, new: str, count: int | None = None) -> str:
    text = to_text(value)
    occurrences = text.count(old) if count is None else min(count, text.count(old))
    if len(text) + occurrences * (len(new) - len(old)) > _output_limit.get():
        raise _Refused(f"replace would produce more than {_output_limit.get()} characters")
    return text.replace(old, new, -1 if count is None else count)


def _build_environment() -> _DataOnlySandbox:
    env = _DataOnlySandbox(undefined=StrictUndefined, autoescape=False)
    env.globals.clear()
    filters: dict[str, Callable[..., Any]] = {name: FILTERS[name] for name in ALLOWED_FILTERS}
    filters.update(join=_capped_join, replace=_capped_replace, tojson=to_text)
    env.filters = filters
    return env


_ENV = _build_environment()


def _fail_if_undefined(value: Any) -> None:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    elif isinstance(value, Mapping):
        for item in value.values():
            _fail_if_undefined(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _fail_if_undefined(item)


@dataclass(frozen=True, slots=True)
class Expression:
    """The inside of one `{{ ... }}`: a plain reference, or a sandboxed Jinja expression over references."""

    source: str
    references: tuple[Reference, ...]
    _reference: Reference | None = None
    _variables: tuple[tuple[str, Reference], ...] = ()
    _compiled: Any = None

    def evaluate(self, ctx: TemplateContext) -> Any:
        if self._reference is not None:
            return resolve(self._reference, ctx)
        values: dict[str, Any] = {}
        for name, reference in self._variables:
            try:
                values[name] = _resolve(reference, ctx)
            except _Unresolved as exc:
                values[name] = _ENV.undefined(hint=str(exc))
        try:
            result = self._compiled(**values)
            if isinstance(result, Iterator):
                result = list(result)
            _fail_if_undefined(result)
        except Exception as exc:
            raise TemplateError(f"template {{{{{self.source}}}}}: {exc}") from None
        return result


@lru_cache(maxsize=4096)
def parse_expression(source: str) -> Expression:
    """Parse the inside of one `{{ ... }}` (without the braces); TemplateError on bad syntax."""
    source = source.strip()
    if not source:
        raise TemplateError("template {{}}: empty template")
    if len(source) > MAX_EXPRESSION_CHARS:
        raise TemplateError(
            f"template {{{{{source[:60]}...}}}}: longer than {MAX_EXPRESSION_CHARS} characters"
        )
    plain = _REFERENCE_RE.fullmatch(source)
    if plain is not None and _reads_value(source, 0, plain["root"], plain["path"]):
        reference = _make_reference(plain["root"], plain["path"], source)
        return Expression(source=source, references=(reference,), _reference=reference)
    rewritten, variables = _rewrite(source)
    try:
        compiled = _ENV.compile_expression(rewritten, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template {{{{{source}}}}}: syntax error: {exc.message}") from None
    except RecursionError:
        raise TemplateError(f"template {{{{{source[:60]}}}}}: nested too deeply") from None
    return Expression(
        source=source,
        references=tuple(variables.values()),
        _variables=tuple(variables.items()),
        _compiled=compiled,
    )


@dataclass(frozen=True, slots=True)
class _ParsedText:
    parts: tuple[str | Expression, ...]
    single: Expression | None


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@lru_cache(maxsize=4096)
def _parse_text(text: str) -> _ParsedText:
    parts: list[str | Expression] = []
    position = 0
    for match in TEMPLATE_RE.finditer(text):
        literal = text[position : match.start()]
        if "{{" in literal:
            break
        if literal:
            parts.append(literal)
        parts.append(parse_expression(match[1]))
        position = match.end()
    rest = text[position:]
    if "{{" in rest:
        raise TemplateError(
            f"unclosed '{{{{' (or an unterminated string inside it) in text {_shorten(text)!r}"
        )
    if rest:
        parts.append(rest)
    single = parts[0] if len(parts) == 1 and isinstance(parts[0], Expression) else None
    return _ParsedText(parts=tuple(parts), single=single)


class _Budget:
    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, size: int, text: str) -> None:
        self.used += size
        if self.used > self.limit:
            raise TemplateError(
                f"rendering {_shorten(text)!r} exceeds the output limit of {self.limit} characters"
            )


def _copy_json(value: Any) -> Any:
    """Copy containers so a rendered config never shares mutable state with the outputs it read."""
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    return value


def _render_text(text: str, ctx: TemplateContext, budget: _Budget, keep_type: bool) -> Any:
    parsed = _parse_text(text)
    if keep_type and parsed.single is not None:
        value = parsed.single.evaluate(ctx)
        if isinstance(value, str):
            budget.spend(len(value), text)
            return str(value)
        return _copy_json(value)
    pieces: list[str] = []
    for part in parsed.parts:
        piece = part if isinstance(part, str) else to_text(part.evaluate(ctx))
        budget.spend(len(piece), text)
        pieces.append(piece)
    return "".join(pieces)


def _render(value: Any, ctx: TemplateContext, budget: _Budget) -> Any:
    if isinstance(value, str):
        return _render_text(value, ctx, budget, keep_type=True) if "{{" in value else value
    if isinstance(value, dict):
        return {k: _render(v, ctx, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, ctx, budget) for v in value]
    if isinstance(value, tuple):
        return tuple(_render(v, ctx, budget) for v in value)
    return value


def render(value: Any, ctx: TemplateContext, *, max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS) -> Any:
    """Render every template in a JSON shape. The text all templates of this call produce is capped."""
    token = _output_limit.set(max_output_chars)
    try:
        return _render(value, ctx, _Budget(max_output_chars))
    finally:
        _output_limit.reset(token)


def render_text(text: str, ctx: TemplateContext, *, max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS) -> str:
    """Render a string as text, even when it is a single template."""
    if "{{" not in text:
        return text
    token = _output_limit.set(max_output_chars)
    try:
        return str(_render_text(text, ctx, _Budget(max_output_chars), keep_type=False))
    finally:
        _output_limit.reset(token)


def _walk_strings(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every string containing `{{` in a JSON shape, with its location (`headers.auth`, `messages[0]`)."""
    if isinstance(value, str):
        if "{{" in value:
            yield where, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk_strings(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _walk_strings(item, f"{where}[{index}]")


def references(value: Any) -> list[Reference]:
    """Every reference the templates in a JSON shape make, in order, without duplicates.
    Raises TemplateError on the first malformed template."""
    found: dict[Reference, None] = {}
    for _, text in _walk_strings(value):
        for part in _parse_text(text).parts:
            if isinstance(part, Expression):
                found.update(dict.fromkeys(part.references))
    return list(found)


def check_template_syntax(value: Any) -> list[str]:
    """Problems with the templates in a JSON shape, each prefixed by where it is; empty when all parse."""
    problems: list[str] = []
    for where, text in _walk_strings(value):
        try:
            _parse_text(text)
        except TemplateError as exc:
            problems.append(f"{where}: {exc.message}" if where else exc.message)
    return problems
