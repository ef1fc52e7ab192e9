"""Validating what users send, in worker processes: never on the gateway's event loop.

Validation parses every template of a definition (about 10-20 µs a token here), so a body of long
expressions within MAX_BODY_BYTES holds a core for seconds: on the loop, every other request would wait
that long (a 227 KB definition of 120 distinct 1.9 KB expressions held it 0.6 s). A few spawned worker
processes do it instead, each with the service's node types; the loop only waits for the answer. A
validation that takes longer than VALIDATION_TIMEOUT_S is refused, and a worker that dies is replaced.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from engine.errors import InvalidWorkflowError, Problem
from engine.models import WorkflowDefinition
from engine.validation import validate_workflow
from gateway.errors import InvalidRequestError
from nodes.registry import NodeRegistry, default_registry

VALIDATION_TIMEOUT_S = 10.0
MAX_WORKERS = 2
T = TypeVar("T")

_worker_registry: NodeRegistry | None = None


def _start_worker(plugin_paths: tuple[str, ...]) -> None:
    global _worker_registry
    _worker_registry = default_registry(plugin_paths)


def _registry() -> NodeRegistry:
    if _worker_registry is None:
        raise RuntimeError("a definition checker worker was used before its start")
    return _worker_registry


def _check_workflow(body: Mapping[str, Any]) -> tuple[str | None, list[dict[str, str | None]]]:
    """The definition as JSON, or its problems; data both ways, so nothing depends on pickling errors."""
    try:
        return validate_workflow(body, _registry()).model_dump_json(), []
    except InvalidWorkflowError as exc:
        return None, [problem.as_dict() for problem in exc.problems]


def _check_node_config(node_type: str, config: dict[str, Any]) -> list[dict[str, str | None]]:
    registry = _registry()
    return [problem.as_dict() for problem in registry.get(node_type).validate_config_in(config, registry)]


def _ready() -> bool:
    return _worker_registry is not None


def _problem(data: Mapping[str, str | None]) -> Problem:
    return Problem(str(data["message"]), node_id=data["node_id"], field=data["field"])


class DefinitionChecker:
    def __init__(self, plugin_paths: tuple[str, ...], workers: int | None = None) -> None:
        self._plugin_paths = plugin_paths
        self._workers = workers or max(1, min(MAX_WORKERS, os.cpu_count() or 1))
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(self._plugin_paths,),
        )

    async def start(self) -> None:
        """Start every worker now (each imports the node types once), so no request waits for that."""
        self._pool = self._new_pool()
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._pool, _ready) for _ in range(self._workers)))

    async def close(self) -> None:
        """Stop the workers and wait until they have exited (they hold the service's stdout and stderr)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    async def workflow(self, body: Mapping[str, Any]) -> WorkflowDefinition:
        """The parsed definition; InvalidWorkflowError listing every problem."""
        definition_json, problems = await self._run(_check_workflow, body)
        if definition_json is None:
            raise InvalidWorkflowError([_problem(problem) for problem in problems])
        return WorkflowDefinition.model_validate_json(definition_json)

    async def node_config(self, node_type: str, config: dict[str, Any]) -> list[Problem]:
        problems = await self._run(_check_node_config, node_type, config)
        return [_problem(problem) for problem in problems]

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            raise RuntimeError("the definition checker is not started")
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._pool, work, *args), VALIDATION_TIMEOUT_S)
        except TimeoutError:
            raise InvalidRequestError(
                f"validating this request took longer than {VALIDATION_TIMEOUT_S:g} s; send fewer or "
                "shorter templates"
            ) from None
        except BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return await loop.run_in_executor(self._pool, work, *args)
