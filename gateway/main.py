"""The FastAPI app: `create_app(settings)` builds it; its lifespan starts the service runtime
(store, event bus, Ray and the job manager) and closes it at shutdown.

`uvicorn gateway.main:app --port 8001` serves the app built from the environment's settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from actors.bootstrap import start_service_runtime
from config.log_setup import configure_logging
from config.settings import Settings, get_settings
from gateway.auth import TokenVerifier
from gateway.errors import install_error_handlers
from gateway.job_watch import JobWatcher
from gateway.limits import BodySizeLimitMiddleware
from gateway.metrics import HttpMetricsMiddleware, ServiceMetrics
from gateway.routes import analytics, dev, events, health, jobs, nodes, secrets, workflows
from gateway.ui import mount_ui

API_VERSION = "1.0.0"


def create_app(settings: Settings | None = None, *, configure_logs: bool = True) -> FastAPI:
    """The gateway app; `configure_logs=False` leaves the process's logging alone (tests)."""
    settings = settings or get_settings()
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if configure_logs:
            configure_logging(settings.log_level, settings.log_format, settings.log_file)
        runtime = await start_service_runtime(settings)
        watcher = JobWatcher(runtime.store, metrics)
        app.state.runtime = runtime
        app.state.registry = runtime.runtime.registry()
        app.state.watcher = watcher
        try:
            yield
        finally:
            await watcher.close()
            await runtime.close()

    app = FastAPI(
        title="Workflow Service",
        version=API_VERSION,
        description="Workflow definitions (JSON DAGs of nodes and edges) executed as jobs, watched live.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.draining = asyncio.Event()
    app.state.verifier = TokenVerifier(settings.jwt_secret.get_secret_value(), settings.jwt_algorithm)
    install_error_handlers(app)
    for module in (workflows, jobs, events, nodes, secrets, analytics, health, dev):
        app.include_router(module.router)
    mount_ui(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    return app


app = create_app()
