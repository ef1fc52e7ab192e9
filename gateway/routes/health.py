"""Service endpoints without a user token: /health (each dependency reported), /ping, /metrics (behind
METRICS_TOKEN when it is set)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Response
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection

from actors.ray_runtime import ray_api
from actors.ray_runtime.bootstrap import ServiceRuntime
from gateway.auth import bearer_matches
from gateway.deps import ControllerDep, MetricsDep, RuntimeDep, SettingsDep
from gateway.errors import ErrorBody
from gateway.schemas import CheckResult, HealthReport, SandboxReport, StoreReport
from nodes.sandbox import sandbox_status

router = APIRouter(tags=["service"])
logger = logging.getLogger(__name__)
METRICS_REALM = "workflow-service-metrics"


async def _check(probe: Awaitable[Any], timeout_s: float) -> tuple[CheckResult, Any]:
    """Run one probe under a timeout and keep what it returns; False, an error or no answer is down."""
    started = time.perf_counter()
    value: Any = None
    try:
        value = await asyncio.wait_for(probe, timeout_s)
        detail = "ping failed" if value is False else None
    except TimeoutError:
        detail = f"no answer within {timeout_s:g} s"
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
    elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
    return CheckResult(ok=detail is None, detail=detail, latency_ms=elapsed_ms), value


async def _ray_stats(runtime: ServiceRuntime) -> dict[str, Any]:
    """The job manager's stats; starting the schedule keeper too, so that one Ray restarted after a crash
    loads its schedules again at the next health check, as the job manager recovers its jobs."""
    if not ray_api.is_initialized():
        raise RuntimeError("Ray is not initialized in this process")
    stats: dict[str, Any]
    stats, _ = await asyncio.gather(runtime.controller.stats(), runtime.schedules.start_if_needed())
    return stats


async def _sandbox(cgroup_parent: str, timeout_s: float) -> SandboxReport:
    try:
        status = await asyncio.wait_for(sandbox_status(cgroup_parent), timeout_s)
    except TimeoutError:
        return SandboxReport(ok=False, detail=f"the sandbox probe gave no answer within {timeout_s:g} s")
    return SandboxReport.model_validate(status.report())


@router.get(
    "/health",
    response_model=HealthReport,
    responses={503: {"model": HealthReport, "description": "Ray, the store or Redis is down"}},
    summary="Ray (and its job manager), the store and Redis, each reported; the code sandbox too",
)
async def health(runtime: RuntimeDep, settings: SettingsDep) -> JSONResponse:
    timeout = settings.server.health_timeout_s
    (ray, stats), (store, _), (redis, _), sandbox = await asyncio.gather(
        _check(_ray_stats(runtime), timeout),
        _check(runtime.store.ping(), timeout),
        _check(runtime.bus.ping(), timeout),
        _sandbox(runtime.runtime.settings.nodes.sandbox_cgroup_parent, timeout),
    )
    checks = {"ray": ray, "store": store, "redis": redis}
    healthy = all(check.ok for check in checks.values())
    report = HealthReport(
        status="ok" if healthy else "unavailable",
        checks=checks,
        jobs=stats if ray.ok else None,
        sandbox=sandbox,
        store=StoreReport(unreadable_rows=runtime.store.unreadable_rows()),
    )
    return JSONResponse(report.model_dump(mode="json"), status_code=200 if healthy else 503)


@router.get("/ping", summary="Liveness: answers as long as the process serves requests")
async def ping() -> dict[str, str]:
    return {"status": "ok"}


async def metrics_token(connection: HTTPConnection, settings: SettingsDep) -> None:
    """With METRICS_TOKEN set, /metrics answers only a request that carries it as a bearer token."""
    expected = settings.server.metrics_token
    authorization = connection.headers.get("authorization")
    if expected is None or bearer_matches(authorization, expected.get_secret_value()):
        return
    raise HTTPException(
        401,
        "/metrics wants the METRICS_TOKEN as a bearer token",
        headers={"WWW-Authenticate": f'Bearer realm="{METRICS_REALM}"'},
    )


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics (text exposition format)",
    dependencies=[Depends(metrics_token)],
    responses={401: {"model": ErrorBody, "description": "METRICS_TOKEN is set and the request lacks it"}},
)
async def metrics(metrics: MetricsDep, controller: ControllerDep, settings: SettingsDep) -> Response:
    try:
        stats = await asyncio.wait_for(controller.stats(), settings.server.health_timeout_s)
        metrics.set_job_counts(int(stats["active"]), int(stats["pending"]))
    except Exception as exc:
        logger.warning("job counts for /metrics unavailable: %s", exc)
    return Response(metrics.render(), media_type=metrics.content_type)
