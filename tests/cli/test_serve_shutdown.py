"""`workflow-service serve` stopped by SIGTERM with live streams open: a graceful shutdown, not a cut.

A local Ray node installs its own SIGTERM handler (kill Ray, exit at once); the service keeps the
server's, so open streams end properly and the store and Ray are closed by the app's shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.gateway.support import JWT_SECRET, make_token

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SLOW_WORKFLOW = {
    "name": "slow",
    "nodes": [
        {
            "id": "wait",
            "type": "code",
            "config": {"code": "import time\ndef process():\n    time.sleep(120)\n"},
        }
    ],
    "edges": [],
}


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_sigterm_ends_open_streams_and_shuts_the_service_down_gracefully(tmp_path: Path):
    port = free_port()
    env = {
        **os.environ,
        "JWT_SECRET": JWT_SECRET,
        "DATA_DIR": str(tmp_path / "data"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "RAY_DASHBOARD": "false",
        "RAY_NAMESPACE": f"shutdown-test-{port}",
        "LOG_FORMAT": "text",
    }
    server = subprocess.Popen(
        ["workflow-service", "serve", "--workers", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if "Workflow Service is ready" in line:
                break
        else:
            pytest.fail(f"the service did not start (exit code {server.wait()})")
        token = make_token("alice")
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
            workflow = (await client.post("/api/v1/workflows", json=SLOW_WORKFLOW)).json()
            job = (await client.post(f"/api/v1/workflows/{workflow['id']}/execute", json={})).json()
            while (await client.get(f"/api/v1/jobs/{job['id']}")).json()["status"] != "running":
                await asyncio.sleep(0.1)

            # A stream counts as open once its first event has arrived: SIGTERM then ends streams in flight.
            sse_open, ws_open = asyncio.Event(), asyncio.Event()

            async def read_sse() -> list[str]:
                lines = []
                async with client.stream("GET", f"/api/v1/jobs/{job['id']}/events", timeout=60) as response:
                    async for line in response.aiter_lines():
                        lines.append(line)
                        if line.startswith("event: "):
                            sse_open.set()
                return lines

            async def read_ws() -> int | None:
                async with connect(f"ws://127.0.0.1:{port}/ws/jobs/{job['id']}?token={token}") as socket:
                    try:
                        async for _ in socket:
                            ws_open.set()
                    except ConnectionClosed:
                        pass
                    return socket.close_code

            sse = asyncio.create_task(read_sse())
            ws = asyncio.create_task(read_ws())
            await asyncio.wait_for(asyncio.gather(sse_open.wait(), ws_open.wait()), 30)
            assert not sse.done() and not ws.done()
            stopped_at = time.monotonic()
            server.send_signal(signal.SIGTERM)
            sse_lines = await asyncio.wait_for(sse, 30)
            close_code = await asyncio.wait_for(ws, 30)
        exit_code = await asyncio.to_thread(server.wait, 60)
        took = time.monotonic() - stopped_at
        output = server.stdout.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert any(line.startswith("event: job_started") for line in sse_lines), sse_lines
    assert close_code == 1012  # service restart: the client resumes elsewhere with ?after=
    assert "Application shutdown complete" in output, output
    assert exit_code in (0, -signal.SIGTERM), output
    assert took < 30
