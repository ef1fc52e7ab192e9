"""Start and stop everything the gateway stands on, from the settings: the bus (embedded Redis when
none is configured), the store (embedded SQLite when no MongoDB), Ray (a local instance when no
RAY_ADDRESS) and the job manager."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psutil
from pydantic import SecretStr

from actors import ray_api
from actors.controller import WorkflowController
from actors.runtime_config import ActorMode, RuntimeConfig
from config.secrets_key import secrets_key
from config.settings import Settings
from nodes.settings import NodeSettings
from storage.bus_factory import build_event_bus
from storage.embedded_redis import EmbeddedRedis
from storage.protocols import EventBus, Store
from storage.secret_vault import SecretVault, load_operator_secrets
from storage.store_factory import build_store

logger = logging.getLogger(__name__)

MEMORY_PER_JOB_ACTOR = 150 * 2**20
MIN_DERIVED_ACTIVE_JOBS, MAX_DERIVED_ACTIVE_JOBS = 2, 256


def derive_max_active_jobs(memory_bytes: float) -> int:
    """Half the memory Ray may use, at about 150 MB per job actor (84 MB measured, plus headroom)."""
    fitting = int(memory_bytes * 0.5 // MEMORY_PER_JOB_ACTOR)
    return max(MIN_DERIVED_ACTIVE_JOBS, min(MAX_DERIVED_ACTIVE_JOBS, fitting))


@dataclass
class ServiceRuntime:
    settings: Settings
    runtime: RuntimeConfig
    store: Store
    bus: EventBus
    controller: WorkflowController
    cluster: ray_api.ClusterInfo
    embedded_redis: EmbeddedRedis | None
    vault: SecretVault

    async def close(self) -> None:
        await self.bus.close()
        await self.store.close()
        if self.cluster.started_here:
            ray_api.shutdown()
        if self.embedded_redis is not None:
            self.embedded_redis.stop()


async def start_service_runtime(
    settings: Settings, node_settings: NodeSettings | None = None
) -> ServiceRuntime:
    node_settings = node_settings or NodeSettings()
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    user_secrets_key = secrets_key(settings)
    secrets_file = settings.secrets_file.resolve() if settings.secrets_file else None
    load_operator_secrets(secrets_file)
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    bus, embedded = build_event_bus(
        settings.redis_host, settings.redis_port, password, data_dir, settings.event_stream_ttl_s
    )
    try:
        await bus.start()
        store = build_store(
            settings.mongodb_url, settings.mongodb_db, data_dir, settings.mongodb_majority_writes
        )
        await store.start()
        local_memory = psutil.virtual_memory().available
        max_active = settings.max_active_jobs or derive_max_active_jobs(local_memory)
        cluster = ray_api.init(
            settings.ray_address,
            settings.ray_namespace,
            job_slots=max_active + settings.warm_pool_size,
            include_dashboard=settings.ray_dashboard,
        )
        if not cluster.started_here and not settings.max_active_jobs:
            max_active = derive_max_active_jobs(ray_api.cluster_resources().get("memory", local_memory))
        if not ray_api.cluster_resources().get(ray_api.JOB_SLOT):
            logger.warning(
                "no Ray node offers the '%s' resource: job actors wait until the autoscaler adds a node "
                "that does (give workers resources={'%s': N})",
                ray_api.JOB_SLOT,
                ray_api.JOB_SLOT,
            )
        runtime = RuntimeConfig(
            namespace=settings.ray_namespace,
            mongodb_url=settings.mongodb_url,
            mongodb_db=settings.mongodb_db,
            mongodb_majority_writes=settings.mongodb_majority_writes,
            data_dir=data_dir,
            redis_host=embedded.host if embedded else str(settings.redis_host),
            redis_port=embedded.port if embedded else settings.redis_port,
            redis_password=password,
            event_stream_ttl_s=settings.event_stream_ttl_s,
            mode=ActorMode(settings.job_actor_mode),
            max_active_jobs=max_active,
            warm_pool_size=settings.warm_pool_size,
            reuse_max_jobs=settings.reuse_max_jobs,
            executor_pool_size=settings.executor_pool_size,
            secrets_file=secrets_file,
            secrets_key=SecretStr(user_secrets_key),
            node_plugins=settings.node_plugin_paths,
            node_settings=node_settings,
            log_level=settings.log_level,
            log_format=settings.log_format,
        )
        controller = await WorkflowController.connect(runtime, store)
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
            "mode": runtime.mode.value,
        },
    )
    vault = runtime.secret_vault(store)
    return ServiceRuntime(settings, runtime, store, bus, controller, cluster, embedded, vault)
