"""Table tests of a re-run's start: the downstream set, the checkpoints kept, and how Begin runs a pending
job seeded with them (completed nodes are not run; the rest is decided again)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from engine.dag import Dag
from engine.errors import InvalidRerunError
from engine.records import JobStatus, NodeCheckpoint, NodeStatus
from engine.rerun import check_rerun_nodes, kept_checkpoints
from engine.scheduler import JobState
from tests.engine.test_scheduler import Fail, Ok, Simulation, cond, make_dag

Edges = list[tuple[str, str]]
CHAIN: Edges = [("a", "b"), ("b", "c"), ("c", "d")]
DIAMOND: Edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
FAILED_AT_C = {"a": "completed", "b": "completed", "c": "failed", "d": "cancelled"}


def abcd(edges: Edges) -> Dag:
    return make_dag([{"id": node_id} for node_id in "abcd"], edges)


def checkpoints(dag: Dag, statuses: dict[str, str]) -> dict[str, NodeCheckpoint]:
    """An old job's checkpoints: a completed node has output `old <id>` and took two attempts."""
    return {
        node_id: NodeCheckpoint(
            node_id=node_id,
            node_type=dag.nodes[node_id].type if node_id in dag.nodes else "transform",
            status=NodeStatus(status),
            attempts=2,
            output=f"old {node_id}" if status == "completed" else None,
        )
        for node_id, status in statuses.items()
    }


def seeded(
    dag: Dag, old: dict[str, NodeCheckpoint], script: dict[str, Any], again: Sequence[str] = ()
) -> Simulation:
    """The re-run of a job that ended as `old`, as a pending job seeded with what it keeps, run to its end."""
    simulation = Simulation(dag, script)
    simulation.state = JobState.restore(dag, JobStatus.PENDING, kept_checkpoints(dag, "old-job", old, again))
    return simulation.run()


@pytest.mark.parametrize(
    ("edges", "start", "expected"),
    [
        pytest.param(CHAIN, ["b"], {"b", "c", "d"}, id="chain-from-the-middle"),
        pytest.param(CHAIN, ["d"], {"d"}, id="a-sink-alone"),
        pytest.param(CHAIN, [], set(), id="nothing"),
        pytest.param(DIAMOND, ["b"], {"b", "d"}, id="one-side-of-a-diamond"),
        pytest.param(DIAMOND, ["b", "c"], {"b", "c", "d"}, id="both-sides-share-the-join"),
        pytest.param(DIAMOND, ["a"], {"a", "b", "c", "d"}, id="the-root-is-everything"),
    ],
)
def test_downstream_is_the_nodes_and_everything_reachable_from_them(edges, start, expected):
    assert abcd(edges).downstream(start) == expected


@pytest.mark.parametrize(
    ("old", "again", "kept"),
    [
        pytest.param(FAILED_AT_C, [], {"a", "b"}, id="completed-nodes-are-kept"),
        pytest.param(FAILED_AT_C, ["b"], {"a"}, id="from-b-runs-b-and-after"),
        pytest.param(FAILED_AT_C, ["a"], set(), id="from-the-root-keeps-nothing"),
        pytest.param({"a": "completed", "b": "skipped", "c": "pending"}, [], {"a"}, id="skipped-runs-again"),
        pytest.param({**FAILED_AT_C, "gone": "completed"}, [], {"a", "b"}, id="a-node-not-in-the-dag"),
    ],
)
def test_kept_checkpoints(old, again, kept):
    dag = abcd(CHAIN)
    stored = checkpoints(dag, old)
    result = kept_checkpoints(dag, "old-job", stored, again)
    assert set(result) == kept
    for node_id in kept:
        assert result[node_id] == stored[node_id].model_copy(update={"kept_from": "old-job"}), "as stored"


def test_a_kept_node_names_the_job_that_ran_it_across_a_rerun_of_a_rerun():
    dag = abcd(CHAIN)
    first = kept_checkpoints(dag, "first", checkpoints(dag, FAILED_AT_C))
    second = kept_checkpoints(dag, "second", first)
    assert {node.kept_from for node in first.values()} == {"first"}
    assert {node.kept_from for node in second.values()} == {"first"}, "the job that ran it, not the last"


def test_an_unknown_node_is_named_with_its_index():
    dag = abcd(CHAIN)
    check_rerun_nodes(dag, ["a", "d"])
    with pytest.raises(InvalidRerunError, match="no node 'x'") as raised:
        check_rerun_nodes(dag, ["a", "x", "y"])
    located = [(p.node_id, p.field) for p in raised.value.problems]
    assert located == [("x", "from_nodes[1]"), ("y", "from_nodes[2]")]


@pytest.mark.parametrize(
    ("edges", "old", "again", "ran"),
    [
        pytest.param(CHAIN, FAILED_AT_C, [], [("c", 1), ("d", 1)], id="chain-failed-at-c-runs-c-and-d"),
        pytest.param(CHAIN, FAILED_AT_C, ["b"], [("b", 1), ("c", 1), ("d", 1)], id="chain-from-b"),
        pytest.param(DIAMOND, FAILED_AT_C, [], [("c", 1), ("d", 1)], id="diamond-runs-the-failed-side"),
        pytest.param(
            CHAIN, dict.fromkeys("abcd", "completed"), [], [], id="everything-kept-completes-at-once"
        ),
    ],
)
def test_begin_runs_a_seeded_pending_job_from_its_kept_checkpoints(edges, old, again, ran):
    dag = abcd(edges)
    simulation = seeded(dag, checkpoints(dag, old), {}, again)
    assert simulation.ran == ran
    assert simulation.state.status is JobStatus.COMPLETED
    assert simulation.statuses() == dict.fromkeys("abcd", "completed")
    for node_id in set("abcd") - {node_id for node_id, _ in ran}:
        kept = simulation.state.nodes[node_id]
        assert (kept.output, kept.attempts) == (f"old {node_id}", 2), "a kept node is not run again"


def test_a_kept_conditional_decision_skips_its_other_branch_again():
    dag = make_dag([cond("if", "yes", "no"), {"id": "yes"}, {"id": "no"}], [("if", "yes"), ("if", "no")])
    old = checkpoints(dag, {"if": "completed", "yes": "failed", "no": "skipped"})
    old["if"] = old["if"].model_copy(update={"inactive_targets": ["no"]})
    simulation = seeded(dag, old, {"yes": [Ok("fixed")]})
    assert simulation.ran == [("yes", 1)]
    assert simulation.statuses() == {"if": "completed", "yes": "completed", "no": "skipped"}
    assert simulation.state.status is JobStatus.COMPLETED


def test_a_rerun_that_fails_again_fails_as_a_job_does():
    dag = abcd(CHAIN)
    simulation = seeded(dag, checkpoints(dag, FAILED_AT_C), {"c": [Fail("still broken")]})
    assert simulation.ran == [("c", 1)]
    assert simulation.state.status is JobStatus.FAILED
    assert simulation.statuses() == {"a": "completed", "b": "completed", "c": "failed", "d": "cancelled"}
