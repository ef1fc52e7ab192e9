"""Run user Python code (the `code` node) in a sandbox, never in the calling process."""

from nodes.sandbox.runner import (
    Isolation,
    SandboxLimits,
    SandboxResult,
    bubblewrap_problem,
    run_isolated,
    run_python,
)

__all__ = ["Isolation", "SandboxLimits", "SandboxResult", "bubblewrap_problem", "run_isolated", "run_python"]
