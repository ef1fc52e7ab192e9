"""A map's sub-graph is validated like a workflow, each problem located under the map node's config.graph."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import InvalidWorkflowError
from engine.validation import validate_workflow
from nodes.registry import default_registry


def workflow(graph: dict[str, Any], *, extra_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """prep -> fan -> after; the map's sub-graph is `graph`."""
    fan_config = {"items": "{{input.items}}", "graph": graph, **(extra_config or {})}
    return {
        "name": "wf",
        "nodes": [
            {"id": "prep", "type": "transform", "config": {"template": "{{input.q}}"}},
            {"id": "fan", "type": "map", "config": fan_config},
            {"id": "after", "type": "transform", "config": {"template": "{{fan.output.results}}"}},
        ],
        "edges": [{"source": "prep", "target": "fan"}, {"source": "fan", "target": "after"}],
    }


def transform(node_id: str, template: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "transform", "config": {"template": template}}


def problems_of(definition: dict[str, Any]) -> list[tuple[str | None, str | None, str]]:
    with pytest.raises(InvalidWorkflowError) as caught:
        validate_workflow(definition, default_registry())
    return [(p.node_id, p.field, p.message) for p in caught.value.problems]


def test_a_sub_graph_reading_item_index_input_outer_nodes_secrets_and_itself_is_valid():
    graph = {
        "nodes": [
            transform("a", {"v": "{{item.x}}", "i": "{{index}}", "q": "{{input.q}}", "p": "{{prep.output}}"}),
            transform("b", "{{a.output.v}} {{secrets.TOKEN}}"),
            {"id": "c", "type": "code", "config": {"code": "def process(d):\n    return {'t': '{{'}"}},
        ],
        "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}],
        "output": "b",
    }
    parsed = validate_workflow(workflow(graph), default_registry())
    assert parsed.nodes[1].config["graph"]["output"] == "b"


@pytest.mark.parametrize(
    ("graph", "extra", "field", "message"),
    [
        pytest.param(
            {"nodes": [{"id": "a", "type": "nope"}]},
            None,
            "config.graph.nodes.a.type",
            "sub-graph node 'a': unknown node type 'nope'",
            id="unknown-type",
        ),
        pytest.param(
            {"nodes": [{"id": "a", "type": "llm", "config": {"model": "m"}}]},
            None,
            "config.graph.nodes.a.config.prompt",
            "sub-graph node 'a': ",
            id="child-config",
        ),
        pytest.param(
            {
                "nodes": [transform("a", "1"), transform("b", "2")],
                "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "a"}],
            },
            None,
            "config.graph.nodes.a.edges",
            "cycle: a -> b -> a",
            id="cycle",
        ),
        pytest.param(
            {"nodes": [transform("a", "1")], "edges": [{"source": "a", "target": "zz"}]},
            None,
            "config.graph.edges[0].target",
            "names unknown node 'zz'",
            id="unknown-edge-end",
        ),
        pytest.param(
            {"nodes": [transform("a", "{{b.output}}"), transform("b", "1")]},
            None,
            "config.graph.nodes.a.config",
            "refers to node 'b', which does not run before 'a'",
            id="sub-node-read-before-it-runs",
        ),
        pytest.param(
            {"nodes": [transform("a", "1")], "output": "zz"},
            None,
            "config.graph.output",
            "output 'zz' is not a node of the sub-graph",
            id="output-not-a-node",
        ),
        pytest.param(
            {"nodes": [{"id": "m", "type": "map", "config": {"items": [], "node": {"type": "transform"}}}]},
            None,
            "config.graph.nodes.m.type",
            "a map cannot run inside a map's sub-graph",
            id="map-in-map",
        ),
        pytest.param(
            {"nodes": [transform("a", "1")]},
            {"node": {"type": "transform", "config": {"template": "1"}}},
            "config",
            "set exactly one of node (one node per item) and graph",
            id="both-node-and-graph",
        ),
        pytest.param(
            {"nodes": [transform("a", "1"), transform("a", "2")]},
            None,
            "config.graph.nodes.a.id",
            "duplicate node id 'a'",
            id="duplicate-id",
        ),
        pytest.param(
            {"nodes": []},
            None,
            "config.graph.nodes",
            "at least 1 item",
            id="no-nodes",
        ),
    ],
)
def test_sub_graph_problems_name_the_map_node_and_where_in_its_graph(graph, extra, field, message):
    found = problems_of(workflow(graph, extra_config=extra))
    assert any(
        node_id == "fan" and problem_field == field and message in text
        for node_id, problem_field, text in found
    ), found


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{nope.output}}", "refers to unknown node 'nope'"),
        ("{{after.output}}", "refers to node 'after', which does not run before 'fan'"),
    ],
)
def test_outer_references_are_checked_against_the_workflow(template, message):
    found = problems_of(workflow({"nodes": [transform("a", template)]}))
    assert any(node_id == "fan" and message in text for node_id, _, text in found), found


def test_item_outside_a_map_is_still_refused():
    definition = workflow({"nodes": [transform("a", "1")]})
    definition["nodes"][0]["config"]["template"] = "{{item}}"
    found = problems_of(definition)
    assert any(node_id == "prep" and "only exists inside a map" in text for node_id, _, text in found), found


def test_a_routing_node_as_a_single_map_child_is_refused_with_a_pointer_to_graph():
    definition = workflow({"nodes": [transform("a", "1")]})
    del definition["nodes"][1]["config"]["graph"]
    route = {"condition": "{{item}} > 1", "true_edge": "x", "false_edge": "y"}
    definition["nodes"][1]["config"]["node"] = {"type": "conditional", "config": route}
    found = problems_of(definition)
    assert ("fan", "config.node.type") in [(node_id, field) for node_id, field, _ in found], found
    assert any("put it in a sub-graph (graph) instead" in text for _, _, text in found), found
