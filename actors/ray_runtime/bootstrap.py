"""Start and stop everything the gateway stands on, from the settings: the bus (embedded Redis when
none is configured), the store (embedded SQLite when no MongoDB), Ray (a local instance when no
RAY_ADDRESS), the job manager and (once a schedule is enabled) the schedule keeper."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psutil

from actors.ray_runtime import ray_api
from actors.ray_runtime.controller import WorkflowController
from actors.ray_runtime.runtime_config import RuntimeConfig, new_bus, new_store
from actors.ray_runtime.schedule_keeper import KeeperOnDemand
from config.resolved import Resolved
from config.settings import Settings
from storage.embedded_redis import EmbeddedRedis
from storage.protocols import EventBus, Store
from storage.secret_vault import SecretVault, load_operator_secrets

logger = logging.getLogger(__name__)

MEMORY_PER_JOB_ACTOR = 150 * 2**20
MIN_DERIVED_ACTIVE_JOBS, MAX_DERIVED_ACTIVE_JOBS = 2, 256


def derive_max_active_jobs(memory_bytes: float) -> int:
    """Half the memory Ray may use, at about 150 MB per job actor (84 MB measured, plus headroom)."""
    fitting = int(memory_bytes * 0.5 // MEMORY_PER_JOB_ACTOR)
    return max(MIN_DERIVED_ACTIVE_JOBS, min(MAX_DERIVED_ACTIVE_JOBS, fitting))


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


async def start_service_runtime(settings: Settings, resolved: Resolved | None = None) -> ServiceRuntime:
    """Start the bus, the store, Ray and the job manager from `settings`, resolved against this machine
    (`resolved`: what the gateway already worked out, so that it fails before anything starts)."""
    resolved = resolved or Resolved.of(settings)
    resolved.data_dir.mkdir(parents=True, exist_ok=True)
    load_operator_secrets(resolved.secrets_file)
    bus, embedded = new_bus(settings, resolved, settings.events.redis_host, settings.events.redis_port)
    try:
        await bus.start()
        store = new_store(settings, resolved)
        await store.start()
        jobs = settings.jobs
        local_memory = psutil.virtual_memory().available
        max_active = jobs.max_active_jobs or derive_max_active_jobs(local_memory)
        cluster = ray_api.init(
            settings.ray.address,
            settings.ray.namespace,
            job_slots=max_active + jobs.warm_pool_size,
            include_dashboard=settings.ray.dashboard,
        )
        if not cluster.started_here and not jobs.max_active_jobs:
            max_active = derive_max_active_jobs(ray_api.cluster_resources().get("memory", local_memory))
        if not ray_api.cluster_resources().get(ray_api.JOB_SLOT):
            logger.warning(
                "no Ray node offers the '%s' resource: job actors wait until the autoscaler adds a node "
                "that does (give workers resources={'%s': N})",
                ray_api.JOB_SLOT,
                ray_api.JOB_SLOT,
            )
        runtime = RuntimeConfig(
            settings=settings,
            resolved=resolved,
            redis_host=embedded.host if embedded else str(settings.events.redis_host),
            redis_port=embedded.port if embedded else settings.events.redis_port,
            max_active_jobs=max_active,
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
