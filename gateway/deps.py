"""Request dependencies: the runtime's clients, the caller, and the tenancy checks.

Ownership is checked here, once: `OwnedWorkflow`, `OwnedJob` and `OwnedSchedule` load the record and
answer 404 when it belongs to someone else, exactly as for an id that does not exist, so ids of other
tenants cannot be probed. The WebSocket routes call the same `load_owned_*` functions.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from actors.ray_runtime.bootstrap import ServiceRuntime
from actors.ray_runtime.controller import WorkflowController
from config.settings import Settings
from engine.errors import NotFoundError
from engine.records import JobRecord, WebhookRecord, WorkflowRecord
from engine.schedules import ScheduleRecord
from engine.waits import approval_node, approvers_of, open_approvals
from gateway.auth import AuthenticationError, Principal, TokenVerifier
from gateway.definition_checker import DefinitionChecker
from gateway.hook_secrets import HookSecrets
from gateway.job_watch import JobWatcher
from gateway.metrics import ServiceMetrics
from nodes.registry import NodeRegistry
from nodes.wait import SIGNAL_NAME_PATTERN
from storage.protocols import EventBus, RateLimiter, Store
from storage.secret_vault import SecretVault

MAX_PAGE_SIZE = 500
MAX_OFFSET = 1_000_000
"""Offsets past this are refused (422 naming `query.offset`): each store skips rows one by one to reach
an offset, and SQLite cannot take one past 2**63 - 1 at all; narrow a listing by its filters instead."""

# Every dependency here is `async def`, even those that only read app.state: FastAPI runs a plain `def`
# dependency in its thread pool, and the dozen thread hops an execute request and its event stream
# took cost the gateway more CPU than the JWT check.


async def get_runtime(connection: HTTPConnection) -> ServiceRuntime:
    runtime: ServiceRuntime = connection.app.state.runtime
    return runtime


async def get_app_settings(connection: HTTPConnection) -> Settings:
    settings: Settings = connection.app.state.settings
    return settings


async def get_vault(runtime: Annotated[ServiceRuntime, Depends(get_runtime)]) -> SecretVault:
    return runtime.vault


async def get_store(runtime: Annotated[ServiceRuntime, Depends(get_runtime)]) -> Store:
    return runtime.store


async def get_bus(runtime: Annotated[ServiceRuntime, Depends(get_runtime)]) -> EventBus:
    return runtime.bus


async def get_controller(runtime: Annotated[ServiceRuntime, Depends(get_runtime)]) -> WorkflowController:
    return runtime.controller


async def get_registry(connection: HTTPConnection) -> NodeRegistry:
    registry: NodeRegistry = connection.app.state.registry
    return registry


async def get_checker(connection: HTTPConnection) -> DefinitionChecker:
    checker: DefinitionChecker = connection.app.state.checker
    return checker


async def get_metrics(connection: HTTPConnection) -> ServiceMetrics:
    metrics: ServiceMetrics = connection.app.state.metrics
    return metrics


async def get_watcher(connection: HTTPConnection) -> JobWatcher:
    watcher: JobWatcher = connection.app.state.watcher
    return watcher


async def get_draining(connection: HTTPConnection) -> asyncio.Event:
    """Set when the server begins to shut down: endless streams end then, and clients resume elsewhere."""
    draining: asyncio.Event = connection.app.state.draining
    return draining


async def get_verifier(connection: HTTPConnection) -> TokenVerifier:
    verifier: TokenVerifier = connection.app.state.verifier
    return verifier


DrainingDep = Annotated[asyncio.Event, Depends(get_draining)]
RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
VaultDep = Annotated[SecretVault, Depends(get_vault)]
BusDep = Annotated[EventBus, Depends(get_bus)]
ControllerDep = Annotated[WorkflowController, Depends(get_controller)]
RegistryDep = Annotated[NodeRegistry, Depends(get_registry)]
CheckerDep = Annotated[DefinitionChecker, Depends(get_checker)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
WatcherDep = Annotated[JobWatcher, Depends(get_watcher)]
VerifierDep = Annotated[TokenVerifier, Depends(get_verifier)]


bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A JWT signed with JWT_SECRET using JWT_ALGORITHM, with `sub` and `exp` claims",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)]


def _principal(verifier: TokenVerifier, token: str | None) -> Principal:
    try:
        return verifier.verify(token)
    except AuthenticationError as error:
        raise HTTPException(
            401, error.message, headers={"WWW-Authenticate": error.www_authenticate}
        ) from None


async def authenticate(verifier: VerifierDep, credentials: Credentials) -> Principal:
    return _principal(verifier, credentials.credentials if credentials else None)


async def authenticate_stream(
    verifier: VerifierDep,
    credentials: Credentials,
    token: Annotated[
        str | None, Query(description="the bearer token, for clients that cannot set headers (EventSource)")
    ] = None,
) -> Principal:
    return _principal(verifier, credentials.credentials if credentials else token)


CurrentUser = Annotated[Principal, Depends(authenticate)]
StreamUser = Annotated[Principal, Depends(authenticate_stream)]


async def load_owned_workflow(store: Store, principal: Principal, workflow_id: str) -> WorkflowRecord:
    workflow = await store.get_workflow(workflow_id)
    if not principal.may_access(workflow.owner):
        raise NotFoundError(f"workflow {workflow_id} not found")
    return workflow


async def load_owned_job(store: Store, principal: Principal, job_id: str) -> JobRecord:
    job = await store.get_job(job_id)
    if not principal.may_access(job.owner):
        raise NotFoundError(f"job {job_id} not found")
    return job


async def owned_workflow(
    store: StoreDep, principal: CurrentUser, workflow_id: Annotated[str, Path(max_length=128)]
) -> WorkflowRecord:
    return await load_owned_workflow(store, principal, workflow_id)


async def owned_job(
    store: StoreDep, principal: CurrentUser, job_id: Annotated[str, Path(max_length=128)]
) -> JobRecord:
    return await load_owned_job(store, principal, job_id)


async def streamable_job(
    store: StoreDep, principal: StreamUser, job_id: Annotated[str, Path(max_length=128)]
) -> JobRecord:
    return await load_owned_job(store, principal, job_id)


@dataclass(frozen=True)
class SignalTarget:
    """A job the caller may signal under `name`: its owner or an admin any name; a listed approver
    only the signal that decides an approval node (`approval`), and nothing else of the job."""

    job: JobRecord
    name: str
    approval: bool


async def signal_target(
    store: StoreDep,
    principal: CurrentUser,
    job_id: Annotated[str, Path(max_length=128)],
    name: Annotated[str, Path(max_length=128, pattern=SIGNAL_NAME_PATTERN)],
) -> SignalTarget:
    job = await store.get_job(job_id)
    approvers = await _approvers(store, job, name)
    if principal.may_access(job.owner):
        return SignalTarget(job, name, approvers is not None)
    if approvers is not None and principal.subject in approvers:
        return SignalTarget(job, name, True)
    raise NotFoundError(f"job {job_id} not found")


async def _approvers(store: Store, job: JobRecord, name: str) -> list[str] | None:
    """Who besides the owner may send `name` when it decides an approval (an open one of the job, as an
    agent's approval tool waits, or the workflow's approval node of that id); None when it decides none."""
    waiting = next((wait for _, wait in open_approvals(job) if wait.signal == name), None)
    if waiting is not None:
        return waiting.approvers
    workflow = await store.get_workflow(job.workflow_id, job.workflow_version)
    approval = approval_node(workflow.definition, name)
    return None if approval is None else approvers_of(job, approval)


OwnedWorkflow = Annotated[WorkflowRecord, Depends(owned_workflow)]
OwnedJob = Annotated[JobRecord, Depends(owned_job)]
StreamableJob = Annotated[JobRecord, Depends(streamable_job)]
SignalableJob = Annotated[SignalTarget, Depends(signal_target)]


@dataclass(frozen=True)
class Pagination:
    offset: int
    limit: int


async def pagination(
    offset: Annotated[
        int,
        Query(ge=0, le=MAX_OFFSET, description="items to skip (a row the store cannot read is skipped too)"),
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="items per page")] = 50,
) -> Pagination:
    return Pagination(offset, limit)


PageParams = Annotated[Pagination, Depends(pagination)]


# webhooks (issue 17)


async def get_hook_secrets(connection: HTTPConnection) -> HookSecrets:
    secrets: HookSecrets = connection.app.state.hook_secrets
    return secrets


async def get_rate_limiter(connection: HTTPConnection) -> RateLimiter:
    limiter: RateLimiter = connection.app.state.rate_limiter
    return limiter


HookSecretsDep = Annotated[HookSecrets, Depends(get_hook_secrets)]
RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]


async def owned_webhook(
    store: StoreDep, principal: CurrentUser, hook_id: Annotated[str, Path(max_length=128)]
) -> WebhookRecord:
    """The hook, when the caller owns it (or is an admin); 404 as for an unknown id otherwise."""
    hook = await store.get_webhook(hook_id)
    if not principal.may_access(hook.owner):
        raise NotFoundError(f"webhook {hook_id} not found")
    return hook


OwnedWebhook = Annotated[WebhookRecord, Depends(owned_webhook)]


# ------------------------------------------------------------ schedules


async def owned_schedule(
    store: StoreDep, principal: CurrentUser, schedule_id: Annotated[str, Path(max_length=128)]
) -> ScheduleRecord:
    schedule = await store.get_schedule(schedule_id)
    if not principal.may_access(schedule.owner):
        raise NotFoundError(f"schedule {schedule_id} not found")
    return schedule


OwnedSchedule = Annotated[ScheduleRecord, Depends(owned_schedule)]
