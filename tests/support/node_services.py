"""The services of a node run on its own in a test, outside any runtime: said out loud, as every place
that runs nodes says them."""

from __future__ import annotations

from typing import Any

from engine.records import LogLevel
from engine.templating import TemplateContext
from nodes.base import NodeContext
from nodes.registry import default_registry
from nodes.services import NodeServices
from nodes.settings import NodeSettings


def standalone_services(settings: NodeSettings | None = None, **offered: Any) -> NodeServices:
    """`settings` (the defaults unless given) and the built-in node types; nothing else unless `offered`
    names it (llm_limiter=..., emit_token=..., dns_resolver=...)."""
    services: dict[str, Any] = {
        "settings": settings or NodeSettings(),
        "registry": default_registry(),
        "llm_limiter": None,
        "emit_token": None,
        "fan_out": None,
        "progress": None,
        "dns_resolver": None,
        "child_jobs": None,
        "run_node": None,
    }
    return NodeServices(**{**services, **offered})


def unread_log(level: LogLevel, message: str, data: dict[str, Any]) -> None:
    """The log of a test that does not read what the node logs."""


def standalone_context(scope: TemplateContext, node_id: str = "n", **fields: Any) -> NodeContext:
    """Attempt 1 of node `node_id` in job `j` of workflow `w` (unless `fields` say otherwise), with
    `standalone_services()` and a log nobody reads."""
    values: dict[str, Any] = {
        "job_id": "j",
        "workflow_id": "w",
        "node_id": node_id,
        "attempt": 1,
        "scope": scope,
        "services": standalone_services(),
        "log": unread_log,
    }
    return NodeContext(**{**values, **fields})
