"""Start and stop everything the gateway stands on, from the settings: the bus (embedded Redis when
none is configured), the store (embedded SQLite when no MongoDB), Ray (a local instance when no
RAY_ADDRESS), the job manager and (once a schedule is enabled) the schedule keeper."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from actors.ray_runtime import ray_api
from actors.ray_runtime.cluster_start import start_ray
from actors.ray_runtime.controller import WorkflowController
from actors.ray_runtime.runtime_config import RuntimeConfig, new_bus, new_store
from actors.ray_runtime.schedule_keeper import KeeperOnDemand
from actors.ray_runtime.shared_runtime import SharedParts
from config.resolved import Resolved
from config.settings import Settings
from storage.embedded_redis import EmbeddedRedis
from storage.protocols import EventBus, Store
from storage.secret_vault import SecretVault, load_operator_secrets

logger = logging.getLogger(__name__)


@dataclass
class ServiceRuntime:
    runtime: RuntimeConfig
    store: Store
    bus: EventBus
    controller: WorkflowController
    cluster: ray_api.ClusterInfo
    embedded_redis: EmbeddedRedis | None
    vault: SecretVault
    schedules: KeeperOnDemand
    """The cluster's schedule keeper (started once needed): told when a schedule is created, changed or
    deleted."""

    async def close(self) -> None:
        await self.bus.close()
        await self.store.close()
        if self.cluster.started_here:
            ray_api.shutdown()
        if self.embedded_redis is not None:
            self.embedded_redis.stop()


async def start_service_runtime(
    settings: Settings, resolved: Resolved | None = None, shared: SharedParts | None = None
) -> ServiceRuntime:
    """Start the bus, the store, Ray and the job manager from `settings`, resolved against this machine
    (`resolved`: what the gateway already worked out, so that it fails before anything starts); joining
    the local Ray and the embedded Redis of `shared` (a gateway worker's) instead of starting them."""
    resolved = resolved or Resolved.of(settings)
    shared = shared or SharedParts()
    resolved.data_dir.mkdir(parents=True, exist_ok=True)
    load_operator_secrets(resolved.secrets_file)
    bus_host, bus_port = shared.redis_address(settings)
    bus, embedded = new_bus(settings, resolved, bus_host, bus_port)
    try:
        await bus.start()
        store = new_store(settings, resolved)
        await store.start()
        cluster, max_active = start_ray(settings, shared.ray_address or settings.ray.address)
        runtime = RuntimeConfig(
            settings=settings,
            resolved=resolved,
            redis_host=embedded.host if embedded else str(bus_host),
            redis_port=embedded.port if embedded else bus_port,
            max_active_jobs=max_active,
            follows_cluster=not settings.jobs.max_active_jobs,
            cluster_autoscales=bool(settings.ray.address),
        )
        controller = await WorkflowController.connect(runtime, store)
        schedules = KeeperOnDemand(runtime, store)
        await schedules.start_if_needed()
    except BaseException:
        if embedded is not None:
            embedded.stop()
        raise
    logger.info(
        "service runtime started",
        extra={
            "ray": cluster.address,
            "dashboard": cluster.dashboard_url,
            "max_active_jobs": max_active,
            "mode": settings.jobs.actor_mode.value,
        },
    )
    vault = runtime.secret_vault(store)
    return ServiceRuntime(runtime, store, bus, controller, cluster, embedded, vault, schedules)
