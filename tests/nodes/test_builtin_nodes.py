"""The built-in control and data-shaping node types, and the registry that lists them."""

from __future__ import annotations

import pytest

from engine.errors import ConditionError, InvalidWorkflowError, NodeExecutionError, NotFoundError
from engine.templating import TemplateContext
from engine.validation import validate_workflow
from nodes.base import NodeContext
from nodes.registry import NodeRegistry, default_registry
from nodes.transform import TransformNode
from tests.support.node_services import standalone_context


def context(scope: TemplateContext, predecessors: tuple[str, ...] = ()) -> NodeContext:
    return standalone_context(scope, attempt=2, predecessors=predecessors)


async def run(node_type: str, config: dict, scope: TemplateContext, predecessors: tuple[str, ...] = ()):
    node = default_registry().get(node_type)
    return await node.execute(node.parse_config(config, "n"), context(scope, predecessors))


async def test_start_outputs_the_job_input():
    result = await run("start", {}, TemplateContext(input={"message": "hi"}))
    assert result.output == {"message": "hi"}


async def test_transform_outputs_its_rendered_template():
    result = await run("transform", {"template": {"a": [1, {"b": None}]}}, TemplateContext())
    assert result.output == {"a": [1, {"b": None}]}


@pytest.mark.parametrize(
    ("config", "predecessors", "expected"),
    [
        ({"output": {"answer": 42}}, ("x",), {"answer": 42}),
        ({}, ("x", "y"), {"x": 1, "y": 2}),
        ({}, ("x", "skipped"), {"x": 1}),
    ],
)
async def test_end_shapes_the_result(config, predecessors, expected):
    result = await run("end", config, TemplateContext(nodes={"x": 1, "y": 2}), predecessors)
    assert result.output == expected


@pytest.mark.parametrize(
    ("value", "result", "branch", "inactive"),
    [(11, True, "big", {"small"}), (3, False, "small", {"big"})],
)
async def test_conditional_routes_and_marks_the_other_branch_inactive(value, result, branch, inactive):
    config = {"condition": "{{input.value}} > 10", "true_edge": "big", "false_edge": "small"}
    outcome = await run("conditional", config, TemplateContext(input={"value": value}))
    assert outcome.output == {"result": result, "branch": branch}
    assert outcome.inactive_targets == frozenset(inactive)


async def test_conditional_value_is_never_code():
    config = {"condition": "{{input.category}} == 'technical'", "true_edge": "t", "false_edge": "g"}
    outcome = await run("conditional", config, TemplateContext(input={"category": "' or True or '"}))
    assert outcome.output["result"] is False


async def test_conditional_with_a_bad_expression_fails_clearly():
    config = {"condition": "__import__('os')", "true_edge": "t", "false_edge": "g"}
    with pytest.raises(ConditionError, match="not allowed"):
        await run("conditional", config, TemplateContext())


def test_parse_config_names_the_node_and_field():
    with pytest.raises(
        NodeExecutionError, match=r"node 'n' has an invalid config after rendering: config.template"
    ):
        TransformNode().parse_config({}, "n")


def test_idempotency_key_is_job_node_attempt():
    assert context(TemplateContext()).idempotency_key == "j:n:2"


def test_registry_lists_schemas_and_refuses_unknown_and_duplicate_types():
    registry = default_registry()
    schemas = {node.get_schema()["type"]: node.get_schema() for node in registry.all()}
    assert {"start", "end", "transform", "conditional"} <= schemas.keys()
    assert schemas["conditional"]["config_schema"]["required"] == ["condition", "true_edge", "false_edge"]
    with pytest.raises(NotFoundError, match="unknown node type 'nope'"):
        registry.get("nope")
    with pytest.raises(ValueError, match="registered twice"):
        NodeRegistry([TransformNode, TransformNode])


def test_registry_checks_condition_syntax_at_definition_time():
    definition = {
        "name": "w",
        "nodes": [
            {
                "id": "if",
                "type": "conditional",
                "config": {"condition": "len({{input.x}}) > 1", "true_edge": "a", "false_edge": "b"},
            },
            {"id": "a", "type": "transform", "config": {"template": 1}},
            {"id": "b", "type": "transform", "config": {"template": 2}},
        ],
        "edges": [{"source": "if", "target": "a"}, {"source": "if", "target": "b"}],
    }
    with pytest.raises(InvalidWorkflowError) as caught:
        validate_workflow(definition, default_registry())
    assert [(p.node_id, p.field) for p in caught.value.problems] == [("if", "config.condition")]
    assert "function calls are not allowed" in caught.value.problems[0].message


def test_user_code_with_braces_is_not_read_as_a_template():
    code = 'def process(input_data):\n    return {"text": f"{{literal}} {input_data}"}\n'
    definition = {
        "name": "w",
        "nodes": [
            {
                "id": "c",
                "type": "code",
                "config": {
                    "language": "python",
                    "code": code,
                    "input_mapping": {"input_data": "{{input.x}}"},
                },
            }
        ],
        "edges": [],
    }
    assert validate_workflow(definition, default_registry()).nodes[0].config["code"] == code
