"""`workflow-service serve` starts the gateway on the embedded defaults and prints where to find it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from cli import base_url

REPO = Path(__file__).resolve().parents[2]


def test_wildcard_hosts_are_shown_as_localhost():
    assert base_url("0.0.0.0", 8001) == "http://localhost:8001"
    assert base_url("::", 8001) == "http://localhost:8001"
    assert base_url("10.1.2.3", 9000) == "http://10.1.2.3:9000"
    assert base_url("::1", 9000) == "http://[::1]:9000"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_serve_starts_the_gateway_prints_its_urls_and_stops_on_sigint(tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DATA_DIR": str(tmp_path),
        "RAY_DASHBOARD": "false",
        "RAY_NAMESPACE": f"cli-test-{uuid.uuid4().hex[:8]}",
        "MAX_ACTIVE_JOBS": "1",
        "WARM_POOL_SIZE": "0",
        "EXECUTOR_POOL_SIZE": "1",
        "LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        "serve",
        "--workers",
        "1",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    printed: list[str] = []
    try:
        async with asyncio.timeout(90):
            while not any(line.startswith("  Ray dashboard:") for line in printed):
                line = await process.stdout.readline()
                assert line, "the service exited early:\n" + "".join(printed)
                printed.append(line.decode())
        assert f"  API:           http://127.0.0.1:{port}/api/v1\n" in printed
        assert f"  Docs:          http://127.0.0.1:{port}/docs\n" in printed
        assert f"  Run viewer:    http://127.0.0.1:{port}/ui/\n" in printed
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/ping")).json() == {"status": "ok"}
            assert (await client.get("/docs")).status_code == 200
            viewer = await client.get("/ui/")
            assert viewer.status_code == 200
            assert "default-src 'self'" in viewer.headers["content-security-policy"]
            assert (await client.get("/api/v1/workflows")).status_code == 401
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
