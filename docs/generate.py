"""Regenerate the parts of the guides that come from the code: `python -m docs.generate` rewrites them,
`python -m docs.generate --check` exits 1 when one is stale (the test suite runs the same comparison).

A generated part sits between `<!-- BEGIN generated: WHAT -->` and `<!-- END generated -->`, where WHAT is

- `node TYPE`: a built-in node type's description, where it runs and its config fields (type, default,
  description), rendered from the schema `GET /api/v1/nodes` serves (`NodeType.get_schema()`);
- `include PATH LANGUAGE`: a file of the repository as a fenced block (the example plugin);
- `address-ranges`: the special-purpose address ranges and what HTTP nodes do with each
  (nodes/special_addresses.py).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GUIDES = ("workflow-engine.md", "node-types.md", "api-reference.md", "deployment.md")
GENERATED = re.compile(
    r"(<!-- BEGIN generated: (?P<what>[^>]+?) -->\n)(?P<body>.*?)(<!-- END generated -->)", re.S
)
WHERE_IT_RUNS = {
    "inline": "inside the job actor (no remote call)",
    "io": "as a coroutine in a shared executor actor",
    "cpu": "as a Ray task (one CPU)",
}


@dataclass(frozen=True)
class Sources:
    """What the generated parts are made from: node schemas by type (as the API serves them) and files."""

    node_schemas: Mapping[str, Mapping[str, Any]]
    repo: Path = REPO


def builtin_node_schemas() -> dict[str, dict[str, Any]]:
    from nodes.registry import BUILTIN_NODE_TYPES

    return {node_type.type_name: node_type().get_schema() for node_type in BUILTIN_NODE_TYPES}


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _bounds(prop: Mapping[str, Any]) -> str:
    parts = []
    if "minimum" in prop and "maximum" in prop:
        parts.append(f"{prop['minimum']:g} to {prop['maximum']:g}")
    else:
        if "minimum" in prop:
            parts.append(f"at least {prop['minimum']:g}")
        if "maximum" in prop:
            parts.append(f"at most {prop['maximum']:g}")
    if "exclusiveMinimum" in prop:
        parts.insert(0, f"above {prop['exclusiveMinimum']:g}")
    if "exclusiveMaximum" in prop:
        parts.append(f"below {prop['exclusiveMaximum']:g}")
    low, high = prop.get("minLength"), prop.get("maxLength")
    if low == 1 and high is None:
        parts.append("not empty")
    elif low is not None and high is not None:
        parts.append(f"{low} to {high} characters")
    elif high is not None:
        parts.append(f"at most {high} characters")
    elif low is not None:
        parts.append(f"at least {low} characters")
    return ", ".join(parts)


def type_text(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    """A JSON schema type in words: `number (0 to 2) or null`, `"GET" | "POST"`, `object of string`."""
    if "$ref" in prop:
        target = defs[prop["$ref"].rsplit("/", 1)[-1]]
        return type_text(target, defs) if "enum" in target else "object"
    if "anyOf" in prop:
        options = [type_text(option, defs) for option in prop["anyOf"]]
        return options[0] if len(options) == 1 else f"{', '.join(options[:-1])} or {options[-1]}"
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "enum" in prop:
        return " \\| ".join(f"`{json.dumps(value)}`" for value in prop["enum"])
    kind = prop.get("type")
    if kind == "null":
        return "null"
    if kind is None:
        return "any JSON"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        text = f"object of {_grouped(type_text(prop['additionalProperties'], defs))}"
    elif kind == "array" and "items" in prop:
        text = f"list of {_grouped(type_text(prop['items'], defs))}"
    else:
        text = {"integer": "integer", "number": "number", "string": "string", "boolean": "boolean"}.get(
            kind, kind
        )
    bounds = _bounds(prop)
    return f"{text} ({bounds})" if bounds else text


def _grouped(text: str) -> str:
    """Parentheses around a union inside `object of` / `list of`."""
    return f"({text})" if " or " in text else text


def _rows(schema: Mapping[str, Any], defs: Mapping[str, Any], prefix: str = "") -> list[str]:
    rows = []
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        if name in required:
            default = "**required**"
        elif "default" in prop:
            default = f"`{json.dumps(prop['default'])}`"
        else:
            default = "optional"
        description = _cell(prop.get("description", ""))
        rows.append(f"| `{prefix}{name}` | {type_text(prop, defs)} | {default} | {description} |")
        if "$ref" in prop:
            target = defs[prop["$ref"].rsplit("/", 1)[-1]]
            if target.get("type") == "object":
                rows.extend(_rows(target, defs, f"{prefix}{name}."))
    return rows


def node_section(info: Mapping[str, Any]) -> str:
    """A node type's description, where it runs and its config table."""
    schema = info["config_schema"]
    lines = [
        f"> {_cell(info['description'])}",
        "",
        f"Runs **{info['execution']}**: {WHERE_IT_RUNS.get(info['execution'], info['execution'])}.",
        "",
    ]
    rows = _rows(schema, schema.get("$defs", {}))
    if rows:
        lines += ["| config field | type | default | description |", "|---|---|---|---|", *rows]
    else:
        lines.append("No config fields: `config` is `{}` or left out.")
    return "\n".join(lines) + "\n\n"


def include_section(repo: Path, path: str, language: str) -> str:
    text = (repo / path).read_text(encoding="utf-8")
    return f"```{language}\n{text}```\n\n"


def address_ranges_section() -> str:
    """One row per range of the table HTTP nodes check; a globally reachable entry inside a blocked range
    says which range refuses it."""
    from nodes.special_addresses import BLOCKED, SPECIAL_RANGES, Treatment

    lines = ["| range | what it is | defined by | the http node |", "|---|---|---|---|"]
    for special in SPECIAL_RANGES:
        verdict = special.treatment.value
        container = BLOCKED.most_specific(special.network.network_address)
        if special.treatment is Treatment.PUBLIC and container is not None:
            verdict = f"{container.treatment.value}, as part of `{container.network}`"
        lines.append(f"| `{special.network}` | {special.what} | {special.reference} | {verdict} |")
    return "\n".join(lines) + "\n\n"


def render(what: str, sources: Sources) -> str:
    kind, *args = what.split()
    if kind == "node" and len(args) == 1:
        if args[0] not in sources.node_schemas:
            raise KeyError(f"no node type {args[0]!r} to document; known: {', '.join(sources.node_schemas)}")
        return node_section(sources.node_schemas[args[0]])
    if kind == "include" and len(args) == 2:
        return include_section(sources.repo, args[0], args[1])
    if kind == "address-ranges" and not args:
        return address_ranges_section()
    raise ValueError(f"unknown generated part {what!r}")


def update(text: str, sources: Sources) -> str:
    """The guide with every generated part rendered again from `sources`."""
    return GENERATED.sub(lambda m: m.group(1) + render(m["what"], sources) + m.group(4), text)


def generated_parts(text: str) -> list[str]:
    return [match["what"] for match in GENERATED.finditer(text)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m docs.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale guides; exit 1 if any")
    args = parser.parse_args(argv)
    sources = Sources(builtin_node_schemas())
    stale = []
    for name in GUIDES:
        path = REPO / "docs" / name
        text = path.read_text(encoding="utf-8")
        fresh = update(text, sources)
        if fresh != text:
            stale.append(name)
            if not args.check:
                path.write_text(fresh, encoding="utf-8")
    verb = "stale" if args.check else "regenerated"
    print(f"{verb}: {', '.join(stale)}" if stale else "all generated parts are up to date")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
