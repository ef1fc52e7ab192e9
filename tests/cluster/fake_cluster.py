"""A Ray cluster whose autoscaler adds and removes "nodes" on this machine: Ray's fake multi-node provider.

`ray.cluster_utils.AutoscalingCluster` does the same but runs `ray stop --force` first and last, which
ends every Ray instance on the machine (other test sessions' too), and reads a provider config the
wheel lacks. So this starts `ray start --head --block` with deploy/fake-multinode.yaml, in a process
group and a temp dir of its own: stopping it ends exactly its processes, the nodes the autoscaler
added included.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
PROVIDER_CONFIG = REPO / "deploy" / "fake-multinode.yaml"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def node_ip() -> str:
    """The address Ray's processes announce (the fake provider's nodes register under it too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        return str(probe.getsockname()[0])


def cluster_env(**extra: str) -> dict[str, str]:
    """What every process of a test cluster runs with: this checkout first on the path (Ray's worker
    processes inherit it), and token authentication stated explicitly for the head and its clients."""
    return {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "token", **extra}


class FakeAutoscalingCluster:
    def __init__(self, idle_timeout_minutes: float, max_workers: int = 4) -> None:
        config: dict[str, Any] = yaml.safe_load(PROVIDER_CONFIG.read_text(encoding="utf-8"))
        config["idle_timeout_minutes"] = idle_timeout_minutes
        config["max_workers"] = max_workers
        self.port = free_port()
        self.address = f"{node_ip()}:{self.port}"
        config["provider"]["gcs_address"] = self.address
        self._config = config
        self._dir = Path(tempfile.mkdtemp(prefix="rfc", dir="/tmp"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> str:
        path = self._dir / "head.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> FakeAutoscalingCluster:
        config_path = self._dir / "cluster.yaml"
        config_path.write_text(json.dumps(self._config), encoding="utf-8")
        head_cpus = self._config["available_node_types"]["ray.head.default"]["resources"]["CPU"]
        command = [
            "ray", "start", "--head", "--block", f"--port={self.port}",
            f"--autoscaling-config={config_path}", f"--num-cpus={head_cpus}",
            "--object-store-memory=100000000", "--include-dashboard=false", "--disable-usage-stats",
            f"--temp-dir={self._dir / 'ray'}",
        ]  # fmt: skip
        env = cluster_env(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
        with open(self._dir / "head.log", "wb") as log:
            self._process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._accepts_connections():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the fake cluster did not start:\n{self.log[-3000:]}")
            time.sleep(0.2)
        return self

    def _accepts_connections(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return "Ray runtime started" in self.log
        return False

    def stop(self) -> None:
        """SIGTERM to `ray start --block` ends its processes; SIGKILL to the group ends any left over."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(STOP_TIMEOUT_S)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
            self._process = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> FakeAutoscalingCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
