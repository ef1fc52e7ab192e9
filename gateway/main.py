"""The FastAPI app: `create_app(settings)` builds it; its lifespan starts the service runtime
(store, event bus, Ray and the job manager) and closes it at shutdown.

`uvicorn --factory gateway.main:create_app --port 8001` serves the app built from the environment's
settings. There is no module-level app: building one checks JWT_SECRET (config/jwt_secret.py), which
must not happen, or fail, merely because the module was imported.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from actors.ray_runtime.bootstrap import ServiceRuntime, start_service_runtime
from actors.ray_runtime.shared_runtime import SharedParts
from config.jwt_secret import jwt_secret
from config.log_setup import configure_logging
from config.resolved import Resolved
from config.settings import Settings, get_settings
from gateway.auth import TokenVerifier
from gateway.definition_checker import DefinitionChecker
from gateway.errors import install_error_handlers
from gateway.hook_secrets import HookSecrets
from gateway.job_watch import JobWatcher
from gateway.limits import BodySizeLimitMiddleware, JsonNestingLimitMiddleware
from gateway.metrics import HttpMetricsMiddleware, ServiceMetrics
from gateway.routes import (
    analytics,
    dev,
    events,
    health,
    hooks,
    jobs,
    nodes,
    schedules,
    secrets,
    waits,
    webhooks,
    workflows,
)
from gateway.served_by import ServedByMiddleware
from gateway.ui import mount_ui
from storage.rate_limit import RedisRateLimiter
from storage.secret_cipher import SecretCipher

API_VERSION = "1.0.0"
ROUTE_MODULES = (
    workflows,
    jobs,
    schedules,
    waits,
    events,
    nodes,
    secrets,
    analytics,
    health,
    dev,
    webhooks,
    hooks,
)
"""Every module of routes the gateway serves, each with its `router`."""


def create_app(
    settings: Settings | None = None, *, configure_logs: bool = True, shared: SharedParts | None = None
) -> FastAPI:
    """The gateway app; `configure_logs=False` leaves the process's logging alone (tests); `shared`: the
    Ray and Redis a worker of `serve --workers N` joins (cli/gateway_workers.py).

    Raises MissingKeyError (JwtSecretError, SecretsKeyError) when the settings give no key tokens may be
    checked with, or users' secrets sealed with: before anything starts."""
    settings = settings or get_settings()
    verifier = TokenVerifier(jwt_secret(settings), settings.auth.jwt_algorithm)
    resolved = Resolved.of(settings)
    metrics = ServiceMetrics(settings.server.metrics_model_names)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if configure_logs:
            configure_logging(settings.logging.level, settings.logging.format, settings.logging.file)
        checker = DefinitionChecker(settings.jobs.node_plugin_paths)
        checker_started = asyncio.create_task(checker.start())
        try:
            runtime = await start_service_runtime(settings, resolved, shared)
            await checker_started
        except BaseException:
            checker_started.cancel()
            await checker.close()
            raise
        watcher = JobWatcher(runtime.store, metrics)
        limiter = hook_rate_limiter(settings, runtime)
        await limiter.start()
        app.state.runtime = runtime
        app.state.registry = runtime.runtime.registry()
        app.state.watcher = watcher
        app.state.checker = checker
        app.state.rate_limiter = limiter
        try:
            yield
        finally:
            await watcher.close()
            await limiter.close()
            await runtime.close()
            await checker.close()

    app = FastAPI(
        title="Workflow Service",
        version=API_VERSION,
        description="Workflow definitions (JSON DAGs of nodes and edges) executed as jobs, watched live.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.draining = asyncio.Event()
    app.state.verifier = verifier
    app.state.hook_secrets = HookSecrets(SecretCipher(resolved.secrets_key.get_secret_value()))
    install_error_handlers(app)
    for module in ROUTE_MODULES:
        app.include_router(module.router)
    app.add_middleware(JsonNestingLimitMiddleware)
    mount_ui(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.server.max_body_bytes)
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    app.add_middleware(ServedByMiddleware)
    return app


def hook_rate_limiter(settings: Settings, runtime: ServiceRuntime) -> RedisRateLimiter:
    """Webhooks' rate limits, counted in the Redis of the event bus (REDIS_HOST's or the embedded one)."""
    password = settings.events.redis_password
    return RedisRateLimiter(
        runtime.runtime.redis_host,
        runtime.runtime.redis_port,
        password.get_secret_value() if password else None,
    )
