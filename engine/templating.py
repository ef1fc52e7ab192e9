"""Render `{{ ... }}` templates inside node configs.

What a template can say:
- a reference: `{{input.x}}`, `{{node-id.output.items[0].name}}`, `{{input['odd key']}}`, `{{secrets.NAME}}`.
  Node ids may contain hyphens (`{{my-node.output.x}}`); field names are identifiers, other keys use
  `['...']`, indexes are integers (`[-1]` counts from the end). A subtraction needs spaces: `{{input.a - 1}}`.
- an expression over references with Jinja2 syntax: operators (`+ - * / // ~`, `%` on numbers, comparisons,
  `x if c else y`), literals and the filters in `template_sandbox.ALLOWED_FILTERS`
  (`{{ input.name | upper }}`, `{{ input.nick | default('anon') }}`). There are no functions, no
  attribute access to Python objects (only dict keys and list indexes) and no `**`; `{% %}` and `{# #}`
  are plain text. A literal `{{` is written `{{ '{{' }}`.

How a value renders:
- a string that is exactly one template (`"{{ input.n }}"`) becomes the value itself, type kept;
- a template inside text renders as text: strings as they are, every other value as JSON
  (`null`, `true`, `3`, `{"a": 1}`);
- strings without `{{` pass through untouched; dict keys are never rendered.

Plain references are resolved here (fast, with messages that say what is missing); anything else is
evaluated by the Jinja2 sandbox of engine/template_sandbox.py, which sees only the referenced values.
Everything one render() call does is paid for from one evaluation budget (engine/budget.py: the bytes of
each value built, the work in all), and the text it produces is capped (`max_output_chars`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError

from engine.budget import (
    ITEM_UNITS,
    TEXT_UNITS,
    BudgetExceeded,
    EvaluationBudget,
    current_budget,
    evaluation_budget,
)
from engine.errors import TemplateError
from engine.template_sandbox import (
    DEFAULT_MAX_OUTPUT_CHARS,
    ENV,
    check_syntax,
    compiled,
    json_type,
    output_limit,
    to_text,
)

MAX_EXPRESSION_CHARS = 4096
INPUT_ROOT = "input"
SECRETS_ROOT = "secrets"
ITEM_ROOT = "item"
INDEX_ROOT = "index"
ARGS_ROOT = "args"
ITERATION_ROOT = "iteration"
MAP_ROOTS = frozenset({ITEM_ROOT, INDEX_ROOT})
"""Names a map node binds for each item it fans out: `{{item...}}` and `{{index}}`."""
LOOP_ROOTS = frozenset({ITERATION_ROOT})
"""The name a loop node binds for each iteration: `{{iteration.index}}`, `.state`, `.output`."""
LOCAL_ROOT_PLACES = {
    ITEM_ROOT: "a map node's per-item config",
    INDEX_ROOT: "a map node's per-item config",
    ARGS_ROOT: "an agent tool's node config",
    ITERATION_ROOT: "a loop node's graph and until",
}
"""Roots a node defines for the configs it renders itself, and where each is defined."""
LOCAL_ROOTS = frozenset(LOCAL_ROOT_PLACES)
OUTPUT_FIELD = "output"

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
_TEST_POSITION_RE = re.compile(r"\bis(?:\s+not)?$")
_KEYWORDS = frozenset(
    {"and", "or", "not", "in", "is", "if", "else", "true", "false", "none", "True", "False", "None"}
)
_MAX_LISTED_FIELDS = 10

PathSegment = str | int


@dataclass(frozen=True, slots=True)
class TemplateContext:
    """What templates can read: the job input, the outputs of finished nodes (node id -> output), secrets,
    and inside a map node the current `item` and its `index`, inside a loop node `iteration` (`locals`)."""

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


def local_owner(root: str) -> str:
    """Where a local root is bound, for messages."""
    return LOCAL_ROOT_PLACES[root]


class _Unresolved(Exception):
    """A reference points at something that is not there."""


def _a(value: Any) -> str:
    kind = json_type(value)
    return kind if value is None else f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


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
    value: Any
    if root == INPUT_ROOT:
        value, where, missing = ctx.input, INPUT_ROOT, "input has no field"
    elif root in LOCAL_ROOTS:
        if root not in ctx.locals:
            raise _Unresolved(f"{{{{{root}}}}} is only defined inside {local_owner(root)}")
        value, where, missing = ctx.locals[root], root, f"{root} has no field"
    elif root == SECRETS_ROOT:
        secret = path[0]
        if not isinstance(secret, str) or secret not in ctx.secrets:
            raise _Unresolved(
                f"no secret named {secret!r} that this job may use (its owner's own secrets, then the "
                "operator's secrets granted to its owner)"
            )
        value, where, path = ctx.secrets[secret], f"secrets.{secret}", path[1:]
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
    end = start
    while end > 0 and source[end - 1].isspace():
        end -= 1
    if (end > 0 and source[end - 1] == "|") or _TEST_POSITION_RE.search(source, max(0, end - 64), end):
        return False
    after = start + len(root) + len(path_text)
    while after < len(source) and source[after].isspace():
        after += 1
    following = source[after : after + 2]
    if following.startswith("("):
        raise TemplateError(
            f"template {{{{{source}}}}}: function calls are not allowed in templates: {root}{path_text}(...)"
        )
    return not (following.startswith("=") and following != "==")


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


@dataclass(frozen=True, slots=True)
class Expression:
    """The inside of one `{{ ... }}`: a plain reference, or a sandboxed Jinja expression over references."""

    source: str
    references: tuple[Reference, ...]
    _reference: Reference | None = None
    _variables: tuple[tuple[str, Reference], ...] = ()
    _rewritten: str = ""

    def evaluate(self, ctx: TemplateContext) -> Any:
        if self._reference is not None:
            return resolve(self._reference, ctx)
        values: dict[str, Any] = {}
        for name, reference in self._variables:
            try:
                values[name] = _resolve(reference, ctx)
            except _Unresolved as exc:
                values[name] = ENV.undefined(hint=str(exc))
        with evaluation_budget() as budget:
            try:
                result = compiled(self._rewritten, budget)(**values)
                if isinstance(result, Iterator):
                    result = list(result)
                # Measuring the result visits all of it, so an undefined part raises its error here.
                budget.built(result, "the result")
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
        check_syntax(rewritten)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template {{{{{source}}}}}: syntax error: {exc.message}") from None
    except RecursionError:
        raise TemplateError(f"template {{{{{source[:60]}}}}}: nested too deeply") from None
    return Expression(
        source=source,
        references=tuple(variables.values()),
        _variables=tuple(variables.items()),
        _rewritten=rewritten,
    )


@dataclass(frozen=True, slots=True)
class _ParsedText:
    parts: tuple[str | Expression, ...]
    single: Expression | None


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@lru_cache(maxsize=4096)
def _parse_text(text: str) -> _ParsedText:
    """Each `{{` must open a template right where it stands (matching from it, never searching past it,
    keeps this linear in the text's length)."""
    parts: list[str | Expression] = []
    position = 0
    while (start := text.find("{{", position)) != -1:
        match = TEMPLATE_RE.match(text, start)
        if match is None:
            raise TemplateError(
                f"unclosed '{{{{' (or an unterminated string inside it) in text {_shorten(text)!r}"
            )
        if start > position:
            parts.append(text[position:start])
        parts.append(parse_expression(match[1]))
        position = match.end()
    if position < len(text):
        parts.append(text[position:])
    single = parts[0] if len(parts) == 1 and isinstance(parts[0], Expression) else None
    return _ParsedText(parts=tuple(parts), single=single)


class _OutputCap:
    """The text one render() call may produce."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def check(self, size: int, text: str) -> None:
        """Refuse `size` more characters before they are written."""
        if self.used + size > self.limit:
            raise TemplateError(
                f"rendering {_shorten(text)!r} exceeds the output limit of {self.limit} characters"
            )

    def spend(self, size: int, text: str) -> None:
        self.check(size, text)
        self.used += size


def _copy_json(value: Any, budget: EvaluationBudget) -> Any:
    """Copy containers so a rendered config never shares mutable state with the outputs it read; each
    container's items are paid for before they are copied."""
    if isinstance(value, dict):
        budget.spend(ITEM_UNITS * len(value), "copying a value")
        return {k: _copy_json(v, budget) for k, v in value.items()}
    if isinstance(value, list):
        budget.spend(ITEM_UNITS * len(value), "copying a value")
        return [_copy_json(v, budget) for v in value]
    return value


def _render_text(text: str, ctx: TemplateContext, output: _OutputCap, keep_type: bool) -> Any:
    parsed = _parse_text(text)
    budget = current_budget()
    try:
        if keep_type and parsed.single is not None:
            value = parsed.single.evaluate(ctx)
            if isinstance(value, str):
                output.spend(len(value), text)
                return str(value)
            return _copy_json(value, budget)
        pieces: list[str] = []
        for part in parsed.parts:
            if isinstance(part, str):
                piece = part
            else:
                value = part.evaluate(ctx)
                if not isinstance(value, str):
                    size = budget.size(value)
                    output.check(size, text)
                    budget.spend(TEXT_UNITS * size, "writing a value as text")
                piece = to_text(value)
            output.spend(len(piece), text)
            pieces.append(piece)
        return "".join(pieces)
    except BudgetExceeded as exc:
        raise TemplateError(f"rendering {_shorten(text)!r}: {exc}") from None
    except RecursionError:
        raise TemplateError(f"rendering {_shorten(text)!r}: a value is nested too deeply") from None


def _field_name(path: tuple[PathSegment, ...]) -> str:
    where = str(path[0])
    for segment in path[1:]:
        where = _format_path(where, segment)
    return where


def _render(
    value: Any, ctx: TemplateContext, output: _OutputCap, path: tuple[PathSegment, ...] | None
) -> Any:
    """`path` (the field being rendered, from `where`) is None when errors need not name their field."""
    if isinstance(value, str):
        if "{{" not in value:
            return value
        try:
            return _render_text(value, ctx, output, keep_type=True)
        except TemplateError as exc:
            if path is None:
                raise
            raise TemplateError(f"{_field_name(path)}: {exc.message}") from None
    if isinstance(value, dict):
        return {k: _render(v, ctx, output, path and (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, ctx, output, path and (*path, i)) for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return tuple(_render(v, ctx, output, path and (*path, i)) for i, v in enumerate(value))
    return value


def render(
    value: Any,
    ctx: TemplateContext,
    *,
    max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
    where: str | None = None,
) -> Any:
    """Render every template in a JSON shape. The text all templates of this call produce is capped, and
    they share the open evaluation budget (or one of their own). With `where` (such as "config"), an
    error names the field it happened in: `config.headers.X: template {{...}}: ...`."""
    token = output_limit.set(max_output_chars)
    try:
        with evaluation_budget():
            return _render(value, ctx, _OutputCap(max_output_chars), (where,) if where else None)
    finally:
        output_limit.reset(token)


def render_text(text: str, ctx: TemplateContext, *, max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS) -> str:
    """Render a string as text, even when it is a single template."""
    if "{{" not in text:
        return text
    token = output_limit.set(max_output_chars)
    try:
        with evaluation_budget():
            return str(_render_text(text, ctx, _OutputCap(max_output_chars), keep_type=False))
    finally:
        output_limit.reset(token)


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
