"""The calls into Ray that only tests make (the service never does): crash an actor, list live nodes, see
which namespaces hold actors."""

from __future__ import annotations

from typing import Any

import ray
from ray.actor import ActorHandle


def kill_for_restart(handle: ActorHandle) -> None:
    """Kill an actor's process the way a crash would: Ray restarts it if its max_restarts allows."""
    ray.kill(handle, no_restart=False)


def alive_nodes() -> list[dict[str, Any]]:
    """The cluster's live nodes: `node_id`, `resources` (totals) and `metrics_export_port`, from the GCS."""
    return [
        {
            "node_id": node["NodeID"],
            "resources": dict(node.get("Resources", {})),
            "metrics_export_port": node.get("MetricsExportPort"),
        }
        for node in ray.nodes()
        if node.get("Alive")
    ]


def named_actor_namespaces() -> set[str]:
    """The namespaces that hold live named actors."""
    return {entry["namespace"] for entry in ray.util.list_named_actors(all_namespaces=True)}
