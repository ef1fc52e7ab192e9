"""Unauthenticated service endpoints: /health (each dependency reported), /ping, /metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from actors import ray_api
from actors.controller import WorkflowController
from gateway.deps import ControllerDep, MetricsDep, RuntimeDep, SettingsDep
from gateway.schemas import CheckResult, HealthReport, StoreReport

router = APIRouter(tags=["service"])
logger = logging.getLogger(__name__)


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


async def _ray_stats(controller: WorkflowController) -> dict[str, Any]:
    if not ray_api.is_initialized():
        raise RuntimeError("Ray is not initialized in this process")
    return await controller.stats()


@router.get(
    "/health",
    response_model=HealthReport,
    responses={503: {"model": HealthReport, "description": "Ray, the store or Redis is down"}},
    summary="Ray (and its job manager), the store and Redis, each reported",
)
async def health(runtime: RuntimeDep, settings: SettingsDep) -> JSONResponse:
    timeout = settings.health_timeout_s
    (ray, stats), (store, _), (redis, _) = await asyncio.gather(
        _check(_ray_stats(runtime.controller), timeout),
        _check(runtime.store.ping(), timeout),
        _check(runtime.bus.ping(), timeout),
    )
    checks = {"ray": ray, "store": store, "redis": redis}
    healthy = all(check.ok for check in checks.values())
    report = HealthReport(
        status="ok" if healthy else "unavailable",
        checks=checks,
        jobs=stats if ray.ok else None,
        store=StoreReport(unreadable_rows=runtime.store.unreadable_rows()),
    )
    return JSONResponse(report.model_dump(mode="json"), status_code=200 if healthy else 503)


@router.get("/ping", summary="Liveness: answers as long as the process serves requests")
async def ping() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/metrics", response_class=Response, summary="Prometheus metrics (text exposition format)")
async def metrics(metrics: MetricsDep, controller: ControllerDep, settings: SettingsDep) -> Response:
    try:
        stats = await asyncio.wait_for(controller.stats(), settings.health_timeout_s)
        metrics.set_job_counts(int(stats["active"]), int(stats["pending"]))
    except Exception as exc:
        logger.warning("job counts for /metrics unavailable: %s", exc)
    return Response(metrics.render(), media_type=metrics.content_type)
