"""A cgroup of its own for each sandboxed run: one memory limit for all its processes (tmpfs and shared
memory pages included, since the kernel charges them to the cgroup of the process that touches them), a
process limit, and a kill of the whole group at once.

cgroup v2 is used where it is mounted with the memory and pids controllers, else the v1 `memory` and
`pids` hierarchies. Runs' cgroups are created under SANDBOX_CGROUP_PARENT (a directory relative to the
cgroup mount) or, by default, under the service process's own cgroup; on v2 that parent must be allowed
to enable memory and pids for its children, which the kernel refuses while it holds processes itself (the
"no internal processes" rule), so a v2 deployment gives the service a delegated cgroup (docs/deployment.md).

The launcher puts the run in its cgroup before anything else runs: a shell writes its own pid to the
cgroup, then execs bubblewrap (or the bootstrap), so every process of the run is born inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import itertools
import logging
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

RUN_NAME = re.compile(r"sandbox-(\d+)-\d+")
REMOVE_ATTEMPTS = 50
REMOVE_PAUSE_S = 0.01
KILL_ROUNDS = 100
_run_numbers = itertools.count(1)
SWEEP_EVERY_S = 60.0
_removal_pending: set[Path] = set()
"""Runs' cgroups that were still busy when they were to go (killed processes not yet exited or reaped)."""
_last_sweep: dict[Path, float] = {}


class CgroupUnavailable(Exception):
    """No cgroup hierarchy here lets the sandbox create a limited cgroup per run; the message says why."""


@dataclasses.dataclass(frozen=True)
class _Mount:
    root: str
    mount_point: Path
    controllers: frozenset[str]


@dataclasses.dataclass(frozen=True)
class CgroupLayout:
    """Where runs' cgroups go: one directory on v2, the memory and the pids directory on v1."""

    version: int
    memory_parent: Path
    pids_parent: Path
    passed_over: str | None = None
    """Why the other version was not used, if it was tried."""

    def describe(self) -> str:
        if self.version == 2:
            where = f"cgroup v2 memory and pids under {self.memory_parent}"
        else:
            where = f"cgroup v1 memory under {self.memory_parent} and pids under {self.pids_parent}"
        return f"{where} ({self.passed_over})" if self.passed_over else where


_layouts: dict[str, CgroupLayout] = {}


def cgroup_layout(parent_setting: str = "") -> CgroupLayout:
    """discover(), kept per parent setting once it succeeded (a failure is tried again next time)."""
    layout = _layouts.get(parent_setting)
    if layout is None:
        layout = _layouts[parent_setting] = discover(parent_setting)
    return layout


def discover(parent_setting: str = "") -> CgroupLayout:
    """Find a hierarchy where this process can create runs' cgroups with memory and pids limits.

    Creates and removes one probe cgroup per hierarchy to prove it; raises CgroupUnavailable naming what
    is missing for v2 and for v1.
    """
    mounts = _cgroup_mounts()
    own = _own_cgroups()
    problems = []
    for attempt in (_v2_layout, _v1_layout):
        try:
            layout = attempt(mounts, own, parent_setting)
            RunCgroup.create(layout, memory_bytes=64 * 2**20, max_processes=8).remove_now()
        except CgroupUnavailable as exc:
            problems.append(str(exc))
            continue
        return dataclasses.replace(layout, passed_over="; ".join(problems) or None)
    raise CgroupUnavailable("; ".join(problems))


def _cgroup_mounts() -> list[_Mount]:
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            before, _, after = line.partition(" - ")
            fields, tail = before.split(), after.split()
            if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
                continue
            point = Path(fields[4].replace("\\040", " "))
            if tail[0] == "cgroup2":
                controllers = frozenset({"unified"})
            else:
                controllers = frozenset(tail[2].split(",")) & {"memory", "pids"}
            found.append(_Mount(root=fields[3], mount_point=point, controllers=controllers))
    return found


def _own_cgroups() -> dict[str, str]:
    """The cgroup path of this process per controller ("unified" for v2), as /proc/self/cgroup says."""
    own = {}
    with open("/proc/self/cgroup", encoding="utf-8") as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else ["unified"]:
                own[controller] = path
    return own


def _parent_dir(mount: _Mount, own_path: str | None, parent_setting: str) -> Path:
    if parent_setting:
        return mount.mount_point / parent_setting.strip("/")
    if own_path is None:
        raise CgroupUnavailable(f"this process is in no cgroup of {mount.mount_point}")
    relative = os.path.relpath(own_path, mount.root)
    if relative.startswith(".."):
        raise CgroupUnavailable(
            f"this process's cgroup {own_path} is outside the part mounted at {mount.mount_point}"
        )
    return (mount.mount_point / relative).resolve()


def _v2_layout(mounts: list[_Mount], own: dict[str, str], parent_setting: str) -> CgroupLayout:
    mount = next((m for m in mounts if "unified" in m.controllers), None)
    if mount is None:
        raise CgroupUnavailable("cgroup v2 is not mounted")
    parent = _parent_dir(mount, own.get("unified"), parent_setting)
    try:
        available = set((parent / "cgroup.controllers").read_text().split())
    except OSError as exc:
        raise CgroupUnavailable(f"cgroup v2 at {parent} is not readable ({exc.strerror})") from exc
    missing = {"memory", "pids"} - available
    if missing:
        raise CgroupUnavailable(
            f"cgroup v2 at {mount.mount_point} does not offer the {' and '.join(sorted(missing))} "
            f"controller{'s' if len(missing) > 1 else ''} to {parent}"
        )
    enabled = set((parent / "cgroup.subtree_control").read_text().split())
    if not {"memory", "pids"} <= enabled:
        try:
            (parent / "cgroup.subtree_control").write_text("+memory +pids")
        except OSError as exc:
            why = " (it holds processes: the no-internal-process rule)" if exc.errno == errno.EBUSY else ""
            raise CgroupUnavailable(
                f"cgroup v2: cannot enable the memory and pids controllers below {parent}: "
                f"{exc.strerror}{why}; set SANDBOX_CGROUP_PARENT to a delegated cgroup"
            ) from exc
    return CgroupLayout(version=2, memory_parent=parent, pids_parent=parent)


def _v1_layout(mounts: list[_Mount], own: dict[str, str], parent_setting: str) -> CgroupLayout:
    parents = {}
    for controller in ("memory", "pids"):
        mount = next((m for m in mounts if controller in m.controllers), None)
        if mount is None:
            raise CgroupUnavailable(f"the cgroup v1 {controller} controller is not mounted")
        parents[controller] = _parent_dir(mount, own.get(controller), parent_setting)
    return CgroupLayout(version=1, memory_parent=parents["memory"], pids_parent=parents["pids"])


def _sweep_stale(parent: Path) -> None:
    """Kill what is left in runs' cgroups whose creating process is gone (a worker killed in the middle
    of a run, or while bubblewrap was starting, which can leave its processes waiting forever for each
    other) and remove them; at most once a minute per parent, so that a run pays for it rarely."""
    now = time.monotonic()
    if now - _last_sweep.get(parent, -SWEEP_EVERY_S) < SWEEP_EVERY_S:
        return
    _last_sweep[parent] = now
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            match = RUN_NAME.fullmatch(entry.name)
            if match and entry.is_dir() and not _alive(int(match.group(1))):
                _kill_all(Path(entry.path))
                if not _removed(Path(entry.path)):
                    _removal_pending.add(Path(entry.path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunCgroup:
    """The cgroup (v2) or the pair of cgroups (v1 memory and pids) of one run."""

    def __init__(self, layout: CgroupLayout, name: str) -> None:
        self.layout = layout
        self.memory_dir = layout.memory_parent / name
        self.pids_dir = layout.pids_parent / name
        self._oom_eventfd: int | None = None

    @classmethod
    def create(cls, layout: CgroupLayout, *, memory_bytes: int, max_processes: int) -> RunCgroup:
        _removal_pending.difference_update([path for path in list(_removal_pending) if _removed(path)])
        for parent in {layout.memory_parent, layout.pids_parent}:
            _sweep_stale(parent)
        run = cls(layout, f"sandbox-{os.getpid()}-{next(_run_numbers)}")
        try:
            for directory in run.dirs:
                directory.mkdir()
            run._limit(memory_bytes, max_processes)
        except OSError as exc:
            run.remove_now()
            raise CgroupUnavailable(
                f"cgroup v{layout.version}: could not set up a run's cgroup "
                f"({exc.filename or run.memory_dir}: {exc.strerror})"
            ) from exc
        return run

    @property
    def dirs(self) -> list[Path]:
        return [self.memory_dir] if self.memory_dir == self.pids_dir else [self.memory_dir, self.pids_dir]

    @property
    def procs_files(self) -> list[str]:
        """Where the launching shell writes its pid, so the run starts inside."""
        return [str(directory / "cgroup.procs") for directory in self.dirs]

    def _limit(self, memory_bytes: int, max_processes: int) -> None:
        (self.pids_dir / "pids.max").write_text(str(max_processes))
        if self.layout.version == 2:
            (self.memory_dir / "memory.max").write_text(str(memory_bytes))
            _write_if_present(self.memory_dir / "memory.swap.max", "0")
            _write_if_present(self.memory_dir / "memory.oom.group", "1")
        else:
            (self.memory_dir / "memory.limit_in_bytes").write_text(str(memory_bytes))
            _write_if_present(self.memory_dir / "memory.memsw.limit_in_bytes", str(memory_bytes))

    def watch_oom(self, on_oom: Callable[[], None]) -> None:
        """Call `on_oom` (on the running loop) when the kernel's OOM killer strikes inside the run.

        v2 kills the whole group itself (memory.oom.group); v1 kills one process, so there the launcher
        learns of it through an eventfd on memory.oom_control and kills the rest."""
        if self.layout.version != 1:
            return
        loop = asyncio.get_running_loop()
        eventfd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        control = os.open(self.memory_dir / "memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
        try:
            (self.memory_dir / "cgroup.event_control").write_text(f"{eventfd} {control}")
        except OSError as exc:
            os.close(eventfd)
            logger.warning("no OOM notification for the sandbox's cgroup %s: %s", self.memory_dir, exc)
            return
        finally:
            os.close(control)
        self._oom_eventfd = eventfd

        def notified() -> None:
            with contextlib.suppress(BlockingIOError):
                os.read(eventfd, 8)
            on_oom()

        loop.add_reader(eventfd, notified)

    def oom_killed(self) -> bool:
        """Whether the OOM killer killed a process of the run: it reached its memory limit."""
        name = "memory.events" if self.layout.version == 2 else "memory.oom_control"
        try:
            lines = (self.memory_dir / name).read_text().splitlines()
        except OSError:
            return False
        counts = dict(line.split(maxsplit=1) for line in lines if " " in line)
        return int(counts.get("oom_kill", "0")) > 0

    def kill(self) -> None:
        """SIGKILL every process of the run, those that left its process group or session included."""
        if self.layout.version == 2 and _write_if_present(self.memory_dir / "cgroup.kill", "1"):
            return
        _kill_all(self.pids_dir)

    async def remove(self) -> None:
        """Remove the run's cgroup once its last process is gone (killed processes take a moment to exit)."""
        self._stop_watching_oom()
        for _ in range(REMOVE_ATTEMPTS):
            if all([_removed(directory) for directory in self.dirs]):
                return
            await asyncio.sleep(REMOVE_PAUSE_S)
        logger.warning(
            "the sandbox's cgroup %s still holds processes: removed after a later run", self.pids_dir
        )
        _removal_pending.update(self.dirs)

    def remove_now(self) -> None:
        self._stop_watching_oom()
        if not all([_removed(directory) for directory in self.dirs]):
            logger.warning("could not remove the sandbox's cgroup %s", self.pids_dir)

    def _stop_watching_oom(self) -> None:
        if self._oom_eventfd is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self._oom_eventfd)
            os.close(self._oom_eventfd)
            self._oom_eventfd = None


def _removed(directory: Path) -> bool:
    """rmdir a cgroup; False while it cannot go yet (EBUSY: it still holds processes)."""
    try:
        directory.rmdir()
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            logger.warning("could not remove the sandbox's cgroup %s: %s", directory, exc.strerror)
        return False
    return True


def _kill_all(directory: Path) -> None:
    """SIGKILL every process of a cgroup, again until none is left alive (they may fork meanwhile)."""
    for _ in range(KILL_ROUNDS):
        living = _living_pids(directory)
        if not living:
            return
        for pid in living:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    logger.warning("the sandbox's cgroup %s kept processes through %d kill rounds", directory, KILL_ROUNDS)


def _living_pids(directory: Path) -> list[int]:
    """A cgroup's processes, less zombies: a killed orphan stays listed until init reaps it."""
    try:
        pids = [int(pid) for pid in (directory / "cgroup.procs").read_text().split()]
    except OSError:
        return []
    return [pid for pid in pids if not _zombie_or_gone(pid)]


def _zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rpartition(b")")[2].split()[0] in (b"Z", b"X")
    except OSError:
        return True


def _write_if_present(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
    except FileNotFoundError:
        return False
    return True


@functools.cache
def launch_prefix(procs_count: int) -> tuple[str, ...]:
    """`sh -c` that writes its pid to each of `procs_count` cgroup.procs files, then execs the rest."""
    moves = " && ".join(f'echo $$ > "${index}"' for index in range(1, procs_count + 1))
    return ("/bin/sh", "-c", f'{moves} && shift {procs_count} && exec "$@"', "sandbox-launch")
