"""Every validation rule, checked by its message; all problems of a definition are reported at once."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, Field

from engine.config_check import model_problems
from engine.errors import InvalidWorkflowError, Problem
from engine.validation import DefinitionLimits, validate_workflow


class LlmConfig(BaseModel):
    model: str
    prompt: str
    temperature: float = Field(default=0.7, ge=0, le=2)


class ConditionalConfig(BaseModel):
    condition: str
    true_edge: str
    false_edge: str


class TableCatalog:
    """A NodeCatalog over a fixed table of config models, so the engine is tested without nodes/."""

    models: ClassVar[dict[str, type[BaseModel] | None]] = {
        "start": None,
        "end": None,
        "transform": None,
        "llm": LlmConfig,
        "conditional": ConditionalConfig,
    }

    def known_types(self) -> Collection[str]:
        return self.models.keys()

    def config_problems(self, node_type: str, config: dict[str, Any]) -> list[tuple[str | None, str]]:
        model = self.models[node_type]
        return model_problems(model, config) if model else []

    def templated_config(self, node_type: str, config: dict[str, Any]) -> dict[str, Any]:
        return config

    def waits(self, node_type: str) -> bool:
        return False

    def routing_targets(self, node_type: str, config: dict[str, Any]) -> dict[str, str]:
        if node_type != "conditional":
            return {}
        return {k: config[k] for k in ("true_edge", "false_edge") if isinstance(config.get(k), str)}


CATALOG = TableCatalog()


def workflow(nodes: list[dict[str, Any]], edges: list[tuple[str, str]] = ()) -> dict[str, Any]:
    for node in nodes:
        node.setdefault("type", "transform")
    return {"name": "w", "nodes": nodes, "edges": [{"source": s, "target": t} for s, t in edges]}


def problems_of(definition: dict[str, Any], limits: DefinitionLimits | None = None) -> list[Problem]:
    with pytest.raises(InvalidWorkflowError) as caught:
        validate_workflow(definition, CATALOG, limits or DefinitionLimits())
    return caught.value.problems


RULES = [
    pytest.param(workflow([]), None, "nodes", "workflow has no nodes", id="empty"),
    pytest.param(workflow([{"id": "a"}, {"id": "a"}]), "a", "id", "duplicate node id 'a'", id="duplicate-id"),
    pytest.param(
        workflow([{"id": "a"}], [("a", "ghost")]),
        None,
        "edges[0].target",
        "edge a -> ghost names unknown node 'ghost'",
        id="edge-unknown-target",
    ),
    pytest.param(
        workflow([{"id": "a"}], [("ghost", "a")]),
        None,
        "edges[0].source",
        "edge ghost -> a names unknown node 'ghost'",
        id="edge-unknown-source",
    ),
    pytest.param(
        workflow([{"id": "a"}], [("a", "a")]), "a", "edges[0]", "self-loop: edge a -> a", id="self-loop"
    ),
    pytest.param(
        workflow([{"id": "a"}, {"id": "b"}, {"id": "c"}], [("a", "b"), ("b", "c"), ("c", "a")]),
        "a",
        "edges",
        "cycle: a -> b -> c -> a",
        id="cycle-with-path",
    ),
    pytest.param(
        workflow([{"id": "a", "type": "teleport"}]),
        "a",
        "type",
        "unknown node type 'teleport'; known types: conditional, end, llm, start, transform",
        id="unknown-type",
    ),
    pytest.param(
        workflow([{"id": "l", "type": "llm", "config": {"prompt": "hi"}}]),
        "l",
        "config.model",
        "Field required",
        id="config-missing-field",
    ),
    pytest.param(
        workflow([{"id": "l", "type": "llm", "config": {"model": "m", "prompt": "p", "temperature": 5}}]),
        "l",
        "config.temperature",
        "less than or equal to 2",
        id="config-out-of-range",
    ),
    pytest.param(
        workflow(
            [
                {
                    "id": "if",
                    "type": "conditional",
                    "config": {"condition": "1 > 0", "true_edge": "b", "false_edge": "zzz"},
                },
                {"id": "b"},
                {"id": "zzz"},
            ],
            [("if", "b")],
        ),
        "if",
        "config.false_edge",
        "false_edge 'zzz' is not a direct successor of 'if' (successors: b)",
        id="conditional-branch-not-a-successor",
    ),
    pytest.param(
        workflow([{"id": "a", "on_error": "error_edge"}]),
        "a",
        "error_edge",
        "on_error 'error_edge' needs error_edge",
        id="error-edge-missing",
    ),
    pytest.param(
        workflow([{"id": "a", "on_error": "error_edge", "error_edge": "h"}, {"id": "h"}]),
        "a",
        "error_edge",
        "error_edge 'h' is not a direct successor of 'a'",
        id="error-edge-not-successor",
    ),
    pytest.param(
        workflow([{"id": "a", "error_edge": "h"}, {"id": "h"}], [("a", "h")]),
        "a",
        "on_error",
        "error_edge is set but on_error is not 'error_edge'",
        id="error-edge-without-policy",
    ),
    pytest.param(
        workflow([{"id": "a.b"}]), "a.b", "id", "node id may only contain letters, digits", id="bad-id"
    ),
    pytest.param(workflow([{"id": "input"}]), "input", "id", "node id 'input' is reserved", id="reserved-id"),
    pytest.param(
        workflow([{"id": "iteration"}]),
        "iteration",
        "id",
        "node id 'iteration' is reserved",
        id="reserved-loop-id",
    ),
    pytest.param(
        workflow([{"id": "a", "timeout_s": -1}]),
        "a",
        "timeout_s",
        "greater than 0",
        id="schema-error-names-node",
    ),
    pytest.param(
        workflow([{"id": "a", "retry": {"max_attempts": 0}}]),
        "a",
        "retry.max_attempts",
        "greater than or equal to 1",
        id="retry-policy",
    ),
    pytest.param({"nodes": []}, None, "name", "Field required", id="missing-name"),
    pytest.param(
        workflow([{"type": "transform"}]), None, "nodes[0].id", "Field required", id="node-without-id"
    ),
]


@pytest.mark.parametrize(("definition", "node_id", "field", "message"), RULES)
def test_rule_reports_node_field_and_message(definition, node_id, field, message):
    problems = problems_of(definition)
    assert any(p.node_id == node_id and p.field == field and message in p.message for p in problems), problems


@pytest.mark.parametrize(
    ("limits", "field", "message"),
    [
        (DefinitionLimits(max_nodes=2), "nodes", "3 nodes, the limit is 2"),
        (DefinitionLimits(max_edges=1), "edges", "2 edges, the limit is 1"),
        (DefinitionLimits(max_bytes=100), None, "bytes, the limit is 100"),
    ],
)
def test_limits(limits, field, message):
    definition = workflow([{"id": "a"}, {"id": "b"}, {"id": "c"}], [("a", "b"), ("b", "c")])
    problems = problems_of(definition, limits)
    assert any(p.field == field and message in p.message for p in problems), problems


def test_all_problems_are_reported_at_once():
    definition = workflow(
        [{"id": "a", "type": "teleport"}, {"id": "a"}, {"id": "b", "type": "llm", "config": {}}, {"id": "c"}],
        [("b", "ghost"), ("c", "c")],
    )
    messages = [str(p) for p in problems_of(definition)]
    assert messages == [
        "a.type: unknown node type 'teleport'; known types: conditional, end, llm, start, transform",
        "a.id: duplicate node id 'a'",
        "b.config.model: Field required",
        "b.config.prompt: Field required",
        "edges[0].target: edge b -> ghost names unknown node 'ghost'",
        "c.edges[1]: self-loop: edge c -> c",
    ]


def test_error_message_summarises_problems():
    with pytest.raises(InvalidWorkflowError) as caught:
        validate_workflow(workflow([{"id": "a"}, {"id": "a"}]), CATALOG)
    assert str(caught.value) == "workflow definition has 1 problem(s): a.id: duplicate node id 'a'"


def test_templates_stand_for_any_type_in_config():
    definition = workflow(
        [
            {
                "id": "l",
                "type": "llm",
                "config": {"model": "m", "prompt": "{{input.q}}", "temperature": "{{input.t}}"},
            }
        ]
    )
    assert validate_workflow(definition, CATALOG).nodes[0].config["temperature"] == "{{input.t}}"


def test_valid_platform_example_passes():
    definition = {
        "name": "Customer Support Workflow",
        "nodes": [
            {"id": "start", "type": "start", "config": {}},
            {
                "id": "classify",
                "type": "llm",
                "config": {"model": "gpt-4", "prompt": "Classify this customer inquiry: {{input.message}}"},
            },
            {
                "id": "route",
                "type": "conditional",
                "config": {
                    "condition": "{{classify.output.category}} == 'technical'",
                    "true_edge": "technical_support",
                    "false_edge": "general_support",
                },
            },
            {"id": "technical_support", "type": "transform"},
            {"id": "general_support", "type": "transform"},
        ],
        "edges": [
            {"source": "start", "target": "classify"},
            {"source": "classify", "target": "route"},
            {"source": "route", "target": "technical_support"},
            {"source": "route", "target": "general_support"},
        ],
    }
    assert [n.id for n in validate_workflow(definition, CATALOG).nodes][:2] == ["start", "classify"]


@pytest.mark.timeout(20)
def test_ten_thousand_nodes_validate():
    """The speed figure is the benchmark's (bench: validate10k); here only that it works at that size."""
    size = 10_000
    definition = workflow(
        [{"id": f"n{i}"} for i in range(size)], [(f"n{i}", f"n{i + 1}") for i in range(size - 1)]
    )
    assert len(validate_workflow(definition, CATALOG).nodes) == size


def test_long_cycle_in_a_big_graph_is_found():
    size = 5_000
    edges = [(f"n{i}", f"n{i + 1}") for i in range(size - 1)] + [(f"n{size - 1}", "n0")]
    problems = problems_of(workflow([{"id": f"n{i}"} for i in range(size)], edges))
    assert problems[0].message.startswith("cycle: n0 -> n1 -> ") and problems[0].message.endswith(" -> n0")


TEMPLATE_RULES = [
    pytest.param(
        workflow([{"id": "a", "config": {"template": "{{ghost.output.x}}"}}]),
        "a",
        "template {{ghost.output.x}} refers to unknown node 'ghost'",
        id="unknown-node-in-template",
    ),
    pytest.param(
        workflow([{"id": "a", "config": {"template": "{{b.output}}"}}, {"id": "b"}], [("a", "b")]),
        "a",
        "refers to node 'b', which does not run before 'a'",
        id="downstream-node-in-template",
    ),
    pytest.param(
        workflow(
            [{"id": "a"}, {"id": "b"}, {"id": "c", "config": {"template": "{{b.output}}"}}],
            [("a", "b"), ("a", "c")],
        ),
        "c",
        "refers to node 'b', which does not run before 'c'",
        id="sibling-branch-in-template",
    ),
    pytest.param(
        workflow([{"id": "a", "config": {"template": "{{ input.x "}}]), "a", "template", id="template-syntax"
    ),
    pytest.param(
        workflow([{"id": "a", "config": {"template": "{{item.name}}"}}]),
        "a",
        "{{item}} only exists inside a map node's per-item config",
        id="item-outside-map",
    ),
    pytest.param(
        workflow([{"id": "a", "config": {"template": "{{iteration.index}}"}}]),
        "a",
        "{{iteration}} only exists inside a loop node's graph and until",
        id="iteration-outside-loop",
    ),
]


@pytest.mark.parametrize(("definition", "node_id", "message"), TEMPLATE_RULES)
def test_template_rules(definition, node_id, message):
    problems = problems_of(definition)
    assert any(p.node_id == node_id and p.field == "config" and message in p.message for p in problems), (
        problems
    )


def test_templates_reading_upstream_nodes_input_and_secrets_pass():
    definition = workflow(
        [
            {"id": "a"},
            {"id": "b", "config": {"template": "{{a.output.x}} {{input.q}} {{secrets.key}}"}},
            {"id": "c", "config": {"template": {"deep": ["{{a.output}}", "{{b.output}}"]}}},
        ],
        [("a", "b"), ("b", "c")],
    )
    assert len(validate_workflow(definition, CATALOG).nodes) == 3


@pytest.mark.parametrize(
    ("definition", "field", "message"),
    [
        pytest.param(
            {"name": "w", "nodes": [{"id": "a", "type": "transform", "timeout": 5}]},
            "timeout",
            "unknown field 'timeout'; did you mean 'timeout_s'?",
            id="node-field",
        ),
        pytest.param(
            {"name": "w", "nodes": [{"id": "a", "type": "transform", "retry": {"max_attempt": 2}}]},
            "retry.max_attempt",
            "unknown field 'max_attempt'; did you mean 'max_attempts'?",
            id="retry-field",
        ),
        pytest.param(
            {
                "name": "w",
                "nodes": [{"id": "a", "type": "transform"}],
                "edges": [{"source": "a", "target": "a", "label": "x"}],
            },
            "edges[0].label",
            "free-form data goes in metadata",
            id="edge-field",
        ),
        pytest.param(
            {"name": "w", "nodes": [{"id": "a", "type": "transform"}], "version": 2},
            "version",
            "unknown field 'version'",
            id="workflow-field",
        ),
    ],
)
def test_unknown_fields_are_refused_with_the_closest_known_one(definition, field, message):
    with pytest.raises(InvalidWorkflowError) as caught:
        validate_workflow(definition, CATALOG)
    assert any(p.field == field and message in p.message for p in caught.value.problems), (
        caught.value.problems
    )


def test_free_form_metadata_is_kept_as_written():
    definition = {
        "name": "w",
        "metadata": {"owner": "team-a"},
        "nodes": [{"id": "a", "type": "transform", "metadata": {"position": {"x": 1, "y": 2}}}],
    }
    parsed = validate_workflow(definition, CATALOG)
    assert parsed.metadata == {"owner": "team-a"}
    assert parsed.nodes[0].metadata == {"position": {"x": 1, "y": 2}}
