"""What the sandbox can set up on this machine, and which isolation a run of user code gets.

The full sandbox is bubblewrap, the seccomp filter and a cgroup per run; without one of them code nodes
refuse to run, unless SANDBOX_ALLOW_UNSANDBOXED accepts the strongest isolation that does work: bubblewrap
with whatever it has, else the process-only fallback, which itself needs Landlock to keep user code out
of the service's files and processes. Probes keep only success: one that failed (under load, before an
operator fixed the machine) is tried again next time.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import shutil
from dataclasses import dataclass
from typing import Any

from engine.errors import SandboxError
from nodes.sandbox.cgroups import CgroupUnavailable, cgroup_layout
from nodes.sandbox.runner import (
    SANDBOX_ENV,
    Isolation,
    SandboxLimits,
    SandboxResult,
    bubblewrap_argv,
    interpreter,
    run_isolated,
)
from nodes.sandbox.seccomp import SeccompUnavailable, compiled_filter, filter_pipe

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 10.0
LANDLOCK_CREATE_RULESET = 444
LANDLOCK_CREATE_RULESET_VERSION = 1
REMEDY = (
    "the full sandbox needs bubblewrap and libseccomp (scripts/install), root, and a cgroup the service "
    "may write (docs/deployment.md, 'User code'); SANDBOX_ALLOW_UNSANDBOXED=true accepts a weaker sandbox"
)


@dataclass(frozen=True)
class SandboxStatus:
    """Each part of the sandbox: None where it works here, else why not."""

    bubblewrap: str | None
    seccomp: str | None
    cgroups: str | None
    landlock: str | None
    cgroup_layout: str | None

    @property
    def problem(self) -> str | None:
        """Why the full sandbox cannot run here, or None."""
        return "; ".join(p for p in (self.bubblewrap, self.seccomp, self.cgroups) if p) or None

    @property
    def fallback(self) -> Isolation | None:
        """What SANDBOX_ALLOW_UNSANDBOXED gets instead of the full sandbox; None: nothing can run."""
        if self.bubblewrap is None:
            return Isolation.BUBBLEWRAP
        return Isolation.PROCESS if self.landlock is None else None

    def report(self) -> dict[str, Any]:
        """The status as /health shows it."""
        parts = {
            "bubblewrap": self.bubblewrap,
            "seccomp": self.seccomp,
            "cgroups": self.cgroups,
            "landlock": self.landlock,
        }
        details = {name: {"ok": problem is None, "detail": problem} for name, problem in parts.items()}
        if self.cgroups is None:
            details["cgroups"]["detail"] = self.cgroup_layout
        return {"ok": self.problem is None, "detail": self.problem, "parts": details}


async def sandbox_status(cgroup_parent: str = "") -> SandboxStatus:
    """Probe every part of the sandbox (cheap once each has worked: successes are kept)."""
    try:
        compiled_filter()
        seccomp = None
    except SeccompUnavailable as exc:
        seccomp = str(exc)
    try:
        layout: str | None = cgroup_layout(cgroup_parent).describe()
        cgroups = None
    except (CgroupUnavailable, OSError) as exc:
        layout, cgroups = None, f"no cgroup per run ({exc})"
    return SandboxStatus(
        bubblewrap=await bubblewrap_problem(),
        seccomp=seccomp,
        cgroups=cgroups,
        landlock=landlock_problem(),
        cgroup_layout=layout,
    )


async def run_python(
    code: str,
    arguments: dict[str, Any],
    limits: SandboxLimits,
    *,
    allow_unsandboxed: bool = False,
    cgroup_parent: str = "",
) -> SandboxResult:
    """Run `code` and return what its `process(**arguments)` returns (a JSON value), in the full sandbox.

    Where a part of it is missing this refuses, naming what, unless `allow_unsandboxed` accepts the
    strongest isolation that works here."""
    status = await sandbox_status(cgroup_parent)
    problem = status.problem
    if problem is None:
        return await run_isolated(code, arguments, limits, Isolation.BUBBLEWRAP, cgroup_parent=cgroup_parent)
    if not allow_unsandboxed:
        raise SandboxError(f"cannot run code: {problem}; {REMEDY}")
    isolation = status.fallback
    if isolation is None:
        raise SandboxError(
            f"cannot run code: {problem}; and the process-only fallback needs Landlock to keep user code "
            f"out of the service's files and processes ({status.landlock})"
        )
    logger.warning("running user code in a weaker sandbox (%s): %s", isolation.value, problem)
    return await run_isolated(code, arguments, limits, isolation, cgroup_parent=cgroup_parent)


_working_bubblewraps: set[str] = set()


async def bubblewrap_problem() -> str | None:
    """None when bubblewrap can run the sandbox here, else why not.

    Only success is cached (per `bwrap` path): a probe that failed under load is tried again next time.
    """
    bwrap = shutil.which("bwrap")
    if bwrap in _working_bubblewraps:
        return None
    problem = await _probe_bubblewrap(bwrap)
    if problem is None and bwrap is not None:
        _working_bubblewraps.add(bwrap)
    return problem


async def _probe_bubblewrap(bwrap: str | None) -> str | None:
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    if os.geteuid() != 0:
        return "the bubblewrap sandbox needs the service to run as root (it drops user code to its own uid)"
    try:
        seccomp_fd: int | None = filter_pipe(compiled_filter())
    except SeccompUnavailable:
        seccomp_fd = None
    command = [interpreter(), "-I", "-S", "-c", "pass"]
    argv = bubblewrap_argv(bwrap, SandboxLimits(), None, command, seccomp_fd)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env=SANDBOX_ENV, start_new_session=True,
            pass_fds=[seccomp_fd] if seccomp_fd is not None else [],
        )  # fmt: skip
    finally:
        if seccomp_fd is not None:
            os.close(seccomp_fd)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            _, stderr = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return f"bubblewrap did not start a trivial sandbox within {PROBE_TIMEOUT_S:g} s"
    if proc.returncode != 0:
        detail = stderr.decode(errors="replace").strip() or f"exit status {proc.returncode}"
        return f"bubblewrap does not work here ({detail})"
    return None


_landlock_abi: int | None = None


def landlock_problem() -> str | None:
    """None when the kernel offers Landlock (which the process-only fallback needs), else why not."""
    global _landlock_abi
    if _landlock_abi is not None:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(
        LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION)
    )
    if abi < 1:
        return f"Landlock is not available ({os.strerror(ctypes.get_errno())}; it needs Linux 5.13+)"
    _landlock_abi = int(abi)
    return None
