"""Finding the processes of a sandbox run that this test process started."""

from __future__ import annotations

import asyncio
import contextlib
import time

import psutil


async def wait_for_sandbox() -> list[psutil.Process]:
    """Wait until a sandbox runs user code; return its processes (bwrap, the namespace's init, python)."""
    deadline = time.monotonic() + 20
    while True:
        processes = sandbox_processes()
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                if process.cmdline()[1:4] == ["-I", "-S", "/bootstrap.py"]:
                    return processes
        assert time.monotonic() < deadline, "the sandbox never started"
        await asyncio.sleep(0.02)


def sandbox_processes() -> list[psutil.Process]:
    """Our descendants that belong to a sandbox run (bwrap or the bootstrap)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "bwrap" in cmdline or "bootstrap.py" in cmdline:
            found.append(child)
    return found
