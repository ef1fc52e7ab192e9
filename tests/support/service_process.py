"""`workflow-service serve` in a process of its own, as an operator starts it; its output kept by line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
READY = "Workflow Service is ready"
SERVICE_SETTINGS_FROM_THE_TEST_ENVIRONMENT = (
    "JWT_SECRET",
    "SECRETS_KEY",
    "SECRETS_FILE",
    "METRICS_TOKEN",
    "MONGODB_URL",
    "REDIS_HOST",
    "HOST",
)
"""Unset for the service unless the test sets them: it must not inherit a secret or a store by accident."""


@dataclass
class ServiceProcess:
    process: subprocess.Popen[str]
    port: int
    output: list[str] = field(default_factory=list)
    """Every line the service printed so far (stdout and stderr)."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def wait_until_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(READY in line for line in self.output):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the service did not start:\n" + "".join(self.output))
            time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def service_process(
    env: Mapping[str, str], cwd: Path, timeout_s: float = 90, workers: int = 1
) -> Iterator[ServiceProcess]:
    """The service on a free loopback port with `env` over this environment, in `workers` gateway
    processes (one unless a test is about more: each is another Ray driver); stopped with SIGTERM after."""
    port = free_port()
    inherited = {k: v for k, v in os.environ.items() if k not in SERVICE_SETTINGS_FROM_THE_TEST_ENVIRONMENT}
    full_env = {**inherited, "PYTHONPATH": str(REPO), "HOST": "127.0.0.1", "PORT": str(port), **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--workers", str(workers)],
        env=full_env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    service = ServiceProcess(process, port)
    reader = threading.Thread(target=service._read, daemon=True)
    reader.start()
    try:
        service.wait_until_ready(timeout_s)
        yield service
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(10)
