"""Node types: their config schemas, and a test run of one node through a job's execution path."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends, Path

from actors.ray_runtime import ray_api
from engine.errors import NodeExecutionError, NodeTimeoutError, WorkflowServiceError
from engine.nesting import check_value_depth
from engine.redaction import Redactor
from gateway.deps import CheckerDep, ControllerDep, CurrentUser, RegistryDep, VaultDep, authenticate
from gateway.errors import BODY_TOO_LARGE, ERROR_RESPONSES, InvalidRequestError, Responses, documented
from gateway.schemas import NodeTestRequest, NodeTestResult, NodeTypeInfo

router = APIRouter(tags=["nodes"], responses=ERROR_RESPONSES, dependencies=[Depends(authenticate)])
NOT_FOUND: Responses = documented(404, "No such node type")
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
    responses={**NOT_FOUND, **BODY_TOO_LARGE},
    summary="Run one node with a config and input, where and under the limits a job would run it",
)
async def test_node(
    node_type: NodeTypeName,
    body: NodeTestRequest,
    registry: RegistryDep,
    checker: CheckerDep,
    controller: ControllerDep,
    principal: CurrentUser,
    vault: VaultDep,
) -> NodeTestResult:
    """Templates read the caller's input and the secrets a job of the caller could read; whatever of
    those secrets the output or an error repeats is masked, as in a job."""
    registry.get(node_type)
    problems = await checker.node_config(node_type, body.config)
    if problems:
        raise InvalidRequestError(f"invalid config for node type '{node_type}'", problems=problems)
    secrets = await vault.resolve(principal.subject, principal.roles)
    redactor = Redactor(secrets)
    started = time.perf_counter()
    try:
        result = await controller.test_node(
            node_type, body.config, body.input, secrets, timeout_s=TEST_TIMEOUT_S
        )
    except TimeoutError:
        raise NodeTimeoutError(
            f"node type '{node_type}' did not finish within {TEST_TIMEOUT_S:g} s"
        ) from None
    except WorkflowServiceError as exc:
        raise masked(exc, redactor) from None
    except (ray_api.ActorDiedError, ray_api.RemoteTaskError):
        raise
    except Exception as exc:
        message = redactor.redact_text(f"node type '{node_type}' failed: {type(exc).__name__}: {exc}")
        raise NodeExecutionError(message) from None
    check_value_depth(result.output, f"the output of node type '{node_type}'")
    return NodeTestResult(
        node_type=node_type,
        output=redactor.redact(result.output),
        inactive_targets=sorted(result.inactive_targets),
        usage=result.usage,
        duration_s=time.perf_counter() - started,
    )


def masked(error: WorkflowServiceError, redactor: Redactor) -> WorkflowServiceError:
    """The same error (type, retryability, problems) with every secret in its text masked."""
    error.message = redactor.redact_text(error.message)
    error.args = (error.message,)
    error.problems = [
        replace(problem, message=redactor.redact_text(problem.message)) for problem in error.problems
    ]
    return error
