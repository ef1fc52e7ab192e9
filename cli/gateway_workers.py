"""`serve --workers N`: N gateway processes accept connections on one listening socket, each a Ray driver
of the same cluster.

This process binds the socket, starts the parts every worker shares (the local Ray, the embedded Redis:
actors/ray_runtime/shared_runtime.py), then the workers, each spawned (a fresh interpreter). It stops the
shared parts once the last worker has ended. A worker that ends after it was ready is replaced; one that
ends before stops the service (it would fail the same way again). SIGTERM or SIGINT: each worker is sent
SIGTERM and shuts down gracefully, as a single gateway does.

Metrics: PROMETHEUS_MULTIPROC_DIR is set to a fresh directory after the local Ray has started (Ray's own
processes use prometheus_client too, and must not inherit it) and before the first worker starts
(prometheus_client reads it when it is imported); each worker records into its own files there, /metrics
adds them all up (gateway/metrics.py), and the directory is removed at the end.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType

from fastapi import FastAPI

from actors.ray_runtime.bootstrap import ServiceRuntime
from actors.ray_runtime.shared_runtime import SharedParts, SharedRuntime
from cli.gateway_server import SHUTDOWN_GRACE_S, GatewayServer, announcement, base_url
from config.jwt_secret import jwt_secret
from config.log_setup import configure_logging
from config.resolved import Resolved
from config.settings import Settings
from gateway.main import create_app
from gateway.metrics import MULTIPROCESS_DIR_ENV, forget_worker

logger = logging.getLogger(__name__)

SPAWN = multiprocessing.get_context("spawn")
POLL_S = 0.5
"""How often the serving process looks for a stop signal while it waits on its workers."""
STOP_TIMEOUT_S = SHUTDOWN_GRACE_S + 30
"""How long a worker may take to stop after SIGTERM (its graceful shutdown, then the runtime's close)
before it is killed."""


class WorkerServer(GatewayServer):
    """Tells the serving process, once it listens, the Ray dashboard it found."""

    def __init__(self, app: FastAPI, settings: Settings, ready: Connection) -> None:
        super().__init__(app, settings.server.host, settings.server.port)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            runtime: ServiceRuntime = self.app.state.runtime
            self._ready.send(runtime.cluster.dashboard_url)


def run_worker(settings: Settings, shared: SharedParts, listener: socket.socket, ready: Connection) -> None:
    """A worker process: the gateway on the shared socket, joined to the shared parts."""
    with contextlib.suppress(KeyboardInterrupt):
        WorkerServer(create_app(settings, shared=shared), settings, ready).run(sockets=[listener])


@dataclass
class Worker:
    process: BaseProcess
    ready: Connection
    """Where the worker says it is ready (with the Ray dashboard's URL)."""
    was_ready: bool = False


def bind_listener(host: str, port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host.strip("[]"), port))
    listener.listen(2048)
    listener.set_inheritable(True)
    return listener


class WorkerPool:
    def __init__(self, settings: Settings, shared: SharedParts, listener: socket.socket, count: int) -> None:
        self._settings = settings
        self._shared = shared
        self._listener = listener
        self._count = count
        self._workers: list[Worker] = []
        self._stop_signal: int | None = None
        self._dashboard_url: str | None = None

    def _start_worker(self) -> Worker:
        ours, theirs = SPAWN.Pipe(duplex=False)
        process = SPAWN.Process(
            target=run_worker, args=(self._settings, self._shared, self._listener, theirs)
        )
        process.start()
        theirs.close()
        return Worker(process, ours)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop_signal = signum

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT (0), or until a worker ends before it is ready (1)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        self._workers = [self._start_worker() for _ in range(self._count)]
        announced = False
        exit_code = 0
        while exit_code == 0:
            ends: list[Connection | int] = [w.process.sentinel for w in self._workers]
            wait(ends + [w.ready for w in self._workers if not w.was_ready], POLL_S)
            if self._stop_signal is not None:
                break
            exit_code = self._look_after_workers()
            if not announced and all(w.was_ready for w in self._workers):
                announced = True
                self._announce()
        self._stop_all()
        return exit_code

    def _look_after_workers(self) -> int:
        for index, worker in enumerate(self._workers):
            if not worker.was_ready and worker.ready.poll():
                with contextlib.suppress(EOFError):
                    self._dashboard_url = worker.ready.recv()
                    worker.was_ready = True
            if worker.process.is_alive():
                continue
            self._ended(worker)
            if not worker.was_ready:
                logger.error("gateway worker %s ended before it was ready; stopping", worker.process.pid)
                return 1
            logger.warning(
                "gateway worker %s ended (exit code %s); starting another",
                worker.process.pid,
                worker.process.exitcode,
            )
            self._workers[index] = self._start_worker()
        return 0

    def _announce(self) -> None:
        url = base_url(self._settings.server.host, self._settings.server.port)
        pids = [w.process.pid for w in self._workers if w.process.pid is not None]
        print(announcement(url, self._dashboard_url, pids), flush=True)

    def _stop_all(self) -> None:
        for worker in self._workers:
            if worker.process.is_alive() and worker.process.pid is not None:
                os.kill(worker.process.pid, signal.SIGTERM)
        for worker in self._workers:
            worker.process.join(STOP_TIMEOUT_S)
            if worker.process.is_alive():
                logger.error("gateway worker %s did not stop in time; killing it", worker.process.pid)
                worker.process.kill()
                worker.process.join()
            self._ended(worker)

    @staticmethod
    def _ended(worker: Worker) -> None:
        worker.ready.close()
        if worker.process.pid is not None:
            forget_worker(worker.process.pid)


def serve_workers(settings: Settings, count: int) -> int:
    """Raises MissingKeyError, before anything starts, when the settings give no usable key."""
    jwt_secret(settings)
    resolved = Resolved.of(settings)
    configure_logging(settings.logging.level, settings.logging.format, settings.logging.file)
    host, port = settings.server.host, settings.server.port
    try:
        listener = bind_listener(host, port)
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    with (
        listener,
        SharedRuntime.start(settings, resolved) as shared,
        tempfile.TemporaryDirectory(prefix="workflow-service-metrics-") as metrics_dir,
    ):
        os.environ[MULTIPROCESS_DIR_ENV] = metrics_dir
        return WorkerPool(settings, shared.parts, listener, count).run()
