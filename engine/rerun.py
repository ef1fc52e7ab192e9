"""What a re-run of an ended job starts from.

A re-run is a new pending job of the same workflow version, seeded with the old job's completed
checkpoints (output, attempts, the masked config they ran with, exactly as stored). The scheduling
step's Begin treats it like a job resumed from its checkpoint: completed nodes are not run again, and
every other node is decided afresh, so a kept conditional's decision still skips its other branch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from engine.dag import Dag
from engine.errors import InvalidRerunError, Problem
from engine.records import NodeCheckpoint, NodeStatus


def check_rerun_nodes(dag: Dag, node_ids: Sequence[str], field: str = "from_nodes") -> None:
    """InvalidRerunError naming every entry that is not a node of the DAG, as `from_nodes[i]`."""
    problems = [
        Problem(f"the workflow version has no node '{node_id}'", node_id=node_id, field=f"{field}[{index}]")
        for index, node_id in enumerate(node_ids)
        if node_id not in dag.nodes
    ]
    if problems:
        raise InvalidRerunError(f"cannot re-run: {'; '.join(p.message for p in problems)}", problems=problems)


def kept_checkpoints(
    dag: Dag, old_job_id: str, old_nodes: Mapping[str, NodeCheckpoint], again: Sequence[str] = ()
) -> dict[str, NodeCheckpoint]:
    """The old job's completed checkpoints, less `again` and everything downstream of it; the nodes left
    out start pending. Each kept one names the job that ran it (`kept_from`, carried over a re-run of a
    re-run), so analytics count its run, duration and tokens once, in that job."""
    rerun = dag.downstream(again)
    return {
        node_id: node.model_copy(update={"kept_from": node.kept_from or old_job_id})
        for node_id, node in old_nodes.items()
        if node_id in dag.nodes and node_id not in rerun and node.status is NodeStatus.COMPLETED
    }
