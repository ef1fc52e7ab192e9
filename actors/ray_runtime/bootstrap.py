"""Start and stop everything the gateway stands on, from the settings: the bus (embedded Redis when
none is configured), the store (embedded SQLite when no MongoDB), Ray (a local instance when no
RAY_ADDRESS), the job manager and (once a schedule is enabled) the schedule keeper."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import psutil

from actors.ray_runtime import ray_api
from actors.ray_runtime.controller import WorkflowController
from actors.ray_runtime.job_capacity import admission_limit, derive_max_active_jobs
from actors.ray_runtime.runtime_config import RuntimeConfig, new_bus, new_store
from actors.ray_runtime.schedule_keeper import KeeperOnDemand
from config.resolved import Resolved
from config.settings import JobSettings, Settings
from storage.embedded_redis import EmbeddedRedis
from storage.protocols import EventBus, Store
from storage.secret_vault import SecretVault, load_operator_secrets

logger = logging.getLogger(__name__)


def local_executor_slots(jobs: JobSettings) -> int:
    """The executors a local instance lets a fan-out grow by: at most one executor per core in all (more
    only compete for the cores), and never beyond EXECUTOR_POOL_MAX."""
    per_core = (os.cpu_count() or 1) - jobs.executor_pool_size
    return max(0, min(jobs.executor_pool_max - jobs.executor_pool_size, per_core))


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
            executor_slots=local_executor_slots(jobs),
            include_dashboard=settings.ray.dashboard,
        )
        if not jobs.max_active_jobs:
            max_active = admission_limit(jobs, ray_api.cluster_resources())
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
            follows_cluster=not jobs.max_active_jobs,
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
