"""The calls into Ray that only tests make (the service never does): crash an actor, list live nodes, see
which namespaces hold actors."""

from __future__ import annotations

from typing import Any

import ray
from ray._private import state as ray_state_gcs
from ray.actor import ActorHandle
from ray.util import state as ray_state


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


def actor_table() -> list[dict[str, Any]]:
    """Every actor the GCS knows of, ended ones included (`Name`, `State`, `Address.NodeID`...): where an
    actor ran, after it has gone."""
    return list(ray_state_gcs.state.actor_table(None).values())


SESSION_NAMESPACES: set[str] = set()
"""The Ray namespaces of the services that live for the whole test session (the gateway's, the viewer's,
the docs'): each such fixture adds its own, and the sweep after each module (tests/conftest.py) spares
them."""


def kill_named_actors_outside(keep: set[str]) -> int:
    """Kill every live named actor of this driver's cluster whose namespace is not in `keep`; how many.
    A service runtime's actors are detached (they outlive the process that started them, as a gateway's
    restart needs), so a test's runtime leaves them running until something kills them."""
    if not ray.is_initialized():
        return 0
    killed = 0
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] in keep:
            continue
        try:
            ray.kill(ray.get_actor(entry["name"], namespace=entry["namespace"]), no_restart=True)
        except ValueError:
            continue  # it ended meanwhile
        killed += 1
    return killed


def named_actor_namespaces() -> set[str]:
    """The namespaces that hold live named actors."""
    return {entry["namespace"] for entry in ray.util.list_named_actors(all_namespaces=True)}


def list_actors(dashboard_url: str | None, namespace: str, name_prefix: str = "") -> list[dict[str, Any]]:
    """The namespace's live actors as the Ray dashboard's state API lists them (name, state, pid, class)."""
    filters: list[tuple[str, str, str | bool | int | float]] = [("ray_namespace", "=", namespace)]
    filters.append(("state", "=", "ALIVE"))
    actors = ray_state.list_actors(
        address=dashboard_url, filters=filters, limit=10_000, raise_on_missing_output=False
    )
    return [_as_dict(a) for a in actors if (getattr(a, "name", "") or "").startswith(name_prefix)]


def list_tasks(dashboard_url: str | None, name_prefix: str = "") -> list[dict[str, Any]]:
    """The tasks the dashboard's state API lists, by name prefix."""
    tasks = ray_state.list_tasks(address=dashboard_url, limit=10_000, raise_on_missing_output=False)
    return [_as_dict(t) for t in tasks if (getattr(t, "name", "") or "").startswith(name_prefix)]


def _as_dict(item: Any) -> dict[str, Any]:
    return item if isinstance(item, dict) else dict(vars(item))
