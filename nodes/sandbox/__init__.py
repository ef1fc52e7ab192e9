"""Run user Python code (the `code` node) in a sandbox, never in the calling process."""

from nodes.sandbox.policy import SandboxStatus, bubblewrap_problem, run_python, sandbox_status
from nodes.sandbox.runner import Isolation, SandboxLimits, SandboxResult, run_isolated

__all__ = [
    "Isolation",
    "SandboxLimits",
    "SandboxResult",
    "SandboxStatus",
    "bubblewrap_problem",
    "run_isolated",
    "run_python",
    "sandbox_status",
]
