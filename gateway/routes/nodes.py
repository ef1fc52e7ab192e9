"""Node types: their config schemas, and a test run of one node through a job's execution path."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from actors import ray_api
from engine.errors import NodeExecutionError, NodeTimeoutError, WorkflowServiceError
from gateway.deps import ControllerDep, RegistryDep, RuntimeDep, authenticate
from gateway.errors import ERROR_RESPONSES, ErrorBody, InvalidRequestError
from gateway.schemas import NodeTestRequest, NodeTestResult, NodeTypeInfo

router = APIRouter(tags=["nodes"], responses=ERROR_RESPONSES, dependencies=[Depends(authenticate)])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "No such node type"}}
TEST_TIMEOUT_S = 60.0
NodeTypeName = Annotated[str, Path(max_length=64)]


@router.get("/api/v1/nodes", summary="Node types with their config JSON schema")
async def list_node_types(registry: RegistryDep) -> list[NodeTypeInfo]:
    return [NodeTypeInfo(**node.get_schema()) for node in registry.all()]


@router.get(
    "/api/v1/nodes/{node_type}", responses=NOT_FOUND, summary="One node type with its config JSON schema"
)
async def get_node_type(node_type: NodeTypeName, registry: RegistryDep) -> NodeTypeInfo:
    return NodeTypeInfo(**registry.get(node_type).get_schema())


@router.post(
    "/api/v1/nodes/{node_type}/test",
    responses=NOT_FOUND,
    summary="Run one node with a config and input, where and under the limits a job would run it",
)
async def test_node(
    node_type: NodeTypeName,
    body: NodeTestRequest,
    registry: RegistryDep,
    controller: ControllerDep,
    runtime: RuntimeDep,
) -> NodeTestResult:
    problems = registry.get(node_type).validate_config_in(body.config, registry)
    if problems:
        raise InvalidRequestError(f"invalid config for node type '{node_type}'", problems=problems)
    started = time.perf_counter()
    try:
        result = await controller.test_node(
            node_type, body.config, body.input, runtime.runtime.secrets(), timeout_s=TEST_TIMEOUT_S
        )
    except TimeoutError:
        raise NodeTimeoutError(
            f"node type '{node_type}' did not finish within {TEST_TIMEOUT_S:g} s"
        ) from None
    except (WorkflowServiceError, ray_api.ActorDiedError, ray_api.RemoteTaskError):
        raise
    except Exception as exc:
        raise NodeExecutionError(f"node type '{node_type}' failed: {type(exc).__name__}: {exc}") from exc
    return NodeTestResult(
        node_type=node_type,
        output=result.output,
        inactive_targets=sorted(result.inactive_targets),
        usage=result.usage,
        duration_s=time.perf_counter() - started,
    )
