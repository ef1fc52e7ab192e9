"""The loop node without a runtime: its decisions after each iteration (a pure table), `until` over the
iteration's values, and its validation, each problem naming the node and the field."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import ConditionError, InvalidWorkflowError, NodeExecutionError
from engine.templating import TemplateContext
from engine.validation import validate_workflow
from nodes.loop import (
    KEPT_OUTPUTS,
    Finish,
    Iteration,
    LoopConfig,
    RunIteration,
    next_step,
    restored,
    step_key,
    until_holds,
)
from nodes.registry import default_registry
from nodes.steps import StepJournal

pytestmark = pytest.mark.timeout(10)

GRAPH = {"nodes": [{"id": "a", "type": "transform", "config": {"template": "{{iteration.index}}"}}]}


def config(**fields: Any) -> LoopConfig:
    return LoopConfig.model_validate({"graph": GRAPH, **fields})


def done(*outputs: Any, held_last: bool = False) -> list[Iteration]:
    return [
        Iteration(index, output, held_last and index == len(outputs) - 1)
        for index, output in enumerate(outputs)
    ]


@pytest.mark.parametrize(
    ("fields", "finished", "expected"),
    [
        pytest.param(
            {"state": {"n": 0}},
            [],
            RunIteration(0, {"iteration": {"index": 0, "state": {"n": 0}, "output": None}}),
            id="first-reads-the-initial-state",
        ),
        pytest.param(
            {"state": {"n": 0}},
            done({"n": 1}),
            RunIteration(1, {"iteration": {"index": 1, "state": {"n": 1}, "output": {"n": 1}}}),
            id="the-output-is-the-next-state",
        ),
        pytest.param(
            {"until": "{{iteration.output}} > 1"},
            done(1, 2, held_last=True),
            Finish({"iterations": 2, "state": 2, "outputs": [1, 2], "stopped_by": "until"}),
            id="until-held",
        ),
        pytest.param(
            {"max_iterations": 2},
            done("a", "b"),
            Finish({"iterations": 2, "state": "b", "outputs": ["a", "b"], "stopped_by": "max_iterations"}),
            id="no-until-runs-max-iterations",
        ),
        pytest.param(
            {"max_iterations": 2, "until": "{{iteration.output}}", "on_max_iterations": "return_last"},
            done("a", "b"),
            Finish({"iterations": 2, "state": "b", "outputs": ["a", "b"], "stopped_by": "max_iterations"}),
            id="return-last",
        ),
        pytest.param(
            {"max_iterations": 1, "until": "{{iteration.output}}"},
            done(1, held_last=True),
            Finish({"iterations": 1, "state": 1, "outputs": [1], "stopped_by": "until"}),
            id="until-holding-on-the-last-iteration-wins",
        ),
    ],
)
def test_next_step(
    fields: dict[str, Any], finished: list[Iteration], expected: RunIteration | Finish
) -> None:
    assert next_step(config(**fields), finished) == expected


def test_max_iterations_without_until_holding_fails_by_default() -> None:
    with pytest.raises(NodeExecutionError, match=r"until did not hold after max_iterations \(2\)"):
        next_step(config(max_iterations=2, until="{{iteration.output}}"), done(0, 0))


def test_outputs_keep_the_latest_iterations_only() -> None:
    finished = done(*range(KEPT_OUTPUTS + 5))[5:]
    assert next_step(config(max_iterations=KEPT_OUTPUTS + 6), finished) == RunIteration(
        KEPT_OUTPUTS + 5,
        {"iteration": {"index": KEPT_OUTPUTS + 5, "state": KEPT_OUTPUTS + 4, "output": KEPT_OUTPUTS + 4}},
    )
    step = next_step(config(max_iterations=KEPT_OUTPUTS + 5), finished)
    assert isinstance(step, Finish)
    assert step.output["outputs"] == list(range(5, KEPT_OUTPUTS + 5))
    assert (step.output["iterations"], step.output["state"]) == (KEPT_OUTPUTS + 5, KEPT_OUTPUTS + 4)


def test_an_iteration_survives_its_journal_form() -> None:
    iteration = Iteration(3, {"x": [1]}, True, {"total_tokens": 7})
    assert Iteration.from_json(iteration.to_json()) == iteration


async def test_the_journal_keeps_the_latest_iterations_and_gives_them_back_in_order() -> None:
    journal = StepJournal()
    for index in range(KEPT_OUTPUTS + 7):
        await journal.record(step_key(index), Iteration(index, index * 10, False).to_json())
    assert len(journal) == KEPT_OUTPUTS
    assert [iteration.index for iteration in restored(journal)] == list(range(7, KEPT_OUTPUTS + 7))
    assert restored(StepJournal()) == []


@pytest.mark.parametrize(
    ("until", "output", "held"),
    [
        ("{{iteration.output.done}}", {"done": True}, True),
        ("{{iteration.output.n}} >= {{input.target}}", {"n": 2}, False),
        ("{{iteration.index}} == 4 and {{iteration.state}} == 'start'", None, True),
        (None, {"done": True}, False),
    ],
)
def test_until_reads_the_iterations_output_index_state_and_the_job(
    until: Any, output: Any, held: bool
) -> None:
    run = RunIteration(4, {"iteration": {"index": 4, "state": "start", "output": "previous"}})
    assert until_holds(until, TemplateContext(input={"target": 3}), run, output) is held


def test_an_until_that_cannot_be_evaluated_names_the_field() -> None:
    run = RunIteration(0, {"iteration": {"index": 0, "state": {}, "output": None}})
    with pytest.raises(ConditionError, match=r"^config\.until: "):
        until_holds("{{iteration.output.n}} > 1", TemplateContext(), run, {"m": 1})


def workflow(loop_config: dict[str, Any]) -> dict[str, Any]:
    """prep -> again -> after; `again` is the loop node with `loop_config`."""
    return {
        "name": "wf",
        "nodes": [
            {"id": "prep", "type": "transform", "config": {"template": "{{input.q}}"}},
            {"id": "again", "type": "loop", "config": loop_config},
            {"id": "after", "type": "transform", "config": {"template": "{{again.output.state}}"}},
        ],
        "edges": [{"source": "prep", "target": "again"}, {"source": "again", "target": "after"}],
    }


def problems_of(definition: dict[str, Any]) -> list[tuple[str | None, str | None, str]]:
    with pytest.raises(InvalidWorkflowError) as caught:
        validate_workflow(definition, default_registry())
    return [(p.node_id, p.field, p.message) for p in caught.value.problems]


def test_a_loop_reading_its_iteration_the_input_and_earlier_nodes_is_valid() -> None:
    graph = {
        "nodes": [
            {"id": "a", "type": "transform", "config": {"template": "{{iteration.state}} {{prep.output}}"}},
            {"id": "b", "type": "transform", "config": {"template": "{{a.output}} {{iteration.output}}"}},
        ],
        "edges": [{"source": "a", "target": "b"}],
    }
    until = "{{iteration.output}} == {{prep.output}} or {{iteration.index}} > {{input.n}}"
    validate_workflow(workflow({"graph": graph, "until": until, "state": "{{input.q}}"}), default_registry())


def transform(template: str) -> dict[str, Any]:
    return {"nodes": [{"id": "a", "type": "transform", "config": {"template": template}}]}


@pytest.mark.parametrize(
    ("loop_config", "field", "message"),
    [
        ({"graph": GRAPH, "max_iterations": 1001}, "config.max_iterations", "less than or equal to 1000"),
        ({"graph": GRAPH, "max_iterations": 0}, "config.max_iterations", "greater than or equal to 1"),
        ({"graph": GRAPH, "until": "{{iteration.output}} ="}, "config.until", "invalid syntax"),
        (
            {"graph": GRAPH, "on_max_iterations": "later"},
            "config.on_max_iterations",
            "'fail' or 'return_last'",
        ),
        ({"graph": {"nodes": []}}, "config.graph.nodes", "at least 1 item"),
        ({"graph": transform("{{item}}")}, "config.graph.nodes.a.config", "only exists inside a map"),
        ({"graph": transform("{{nope.output}}")}, "config", "refers to unknown node 'nope'"),
        ({"graph": transform("{{after.output}}")}, "config", "which does not run before 'again'"),
        ({"graph": GRAPH, "until": "{{after.output}}"}, "config", "which does not run before 'again'"),
        (
            {"graph": GRAPH, "state": "{{iteration.index}}"},
            "config",
            "only exists inside a loop node's graph",
        ),
        (
            {"graph": {"nodes": [{"id": "ok", "type": "approval", "config": {"message": "ok?"}}]}},
            "config.graph.nodes.ok.type",
            "a approval node pauses its job, which a loop's iterations cannot",
        ),
        (
            {"graph": {"nodes": [{"id": "inner", "type": "loop", "config": {"graph": GRAPH}}]}},
            "config.graph.nodes.inner.type",
            "sub-graph node 'inner': a loop cannot run inside a loop's sub-graph",
        ),
        (
            {"graph": {**GRAPH, "output": "zz"}},
            "config.graph.output",
            "output 'zz' is not a node of the sub-graph",
        ),
    ],
)
def test_loop_problems_name_the_node_and_the_field(
    loop_config: dict[str, Any], field: str, message: str
) -> None:
    found = problems_of(workflow(loop_config))
    assert any(
        node_id == "again" and problem_field == field and message in text
        for node_id, problem_field, text in found
    ), found


def test_a_loop_inside_a_maps_graph_is_refused() -> None:
    loop = {"id": "inner", "type": "loop", "config": {"graph": GRAPH}}
    definition = workflow({"graph": GRAPH})
    definition["nodes"][1] = {
        "id": "again",
        "type": "map",
        "config": {"items": [1], "graph": {"nodes": [loop]}},
    }
    found = problems_of(definition)
    assert ("again", "config.graph.nodes.inner.type") in [(n, f) for n, f, _ in found], found
