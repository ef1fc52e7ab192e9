"""EVENT_STREAM_TTL_S reaches the buses that job actors open, through the runtime configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from config.settings import Settings
from engine.records import EventType, JobEvent
from storage.embedded_redis import EmbeddedRedis
from tests.support.runtime_config import runtime_config


def test_the_setting_defaults_to_a_day_and_refuses_a_negative_value(monkeypatch: pytest.MonkeyPatch):
    assert Settings(_env_file=None).events.stream_ttl_s == 86_400
    monkeypatch.setenv("EVENT_STREAM_TTL_S", "600")
    assert Settings(_env_file=None).events.stream_ttl_s == 600
    monkeypatch.setenv("EVENT_STREAM_TTL_S", "-1")
    with pytest.raises(ValueError, match="EVENT_STREAM_TTL_S"):
        Settings(_env_file=None)


async def test_a_job_actors_bus_expires_a_finished_jobs_stream_after_the_configured_time(tmp_path: Path):
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    try:
        runtime = runtime_config(tmp_path, server.host, server.port, EVENT_STREAM_TTL_S=120)
        bus = await runtime.open_bus()
        try:
            for sequence, kind in ((1, EventType.JOB_STARTED), (2, EventType.JOB_COMPLETED)):
                await bus.publish(JobEvent(sequence=sequence, type=kind, job_id="done", workflow_id="wf"))
            await bus.publish(
                JobEvent(sequence=1, type=EventType.JOB_STARTED, job_id="busy", workflow_id="wf")
            )
        finally:
            await bus.close()
        with redis.Redis(port=server.port) as raw:
            assert 110 < raw.ttl("wf:job:done") <= 120
            assert raw.ttl("wf:job:busy") == -1, "a running job's stream has no time to live"
    finally:
        server.stop()
