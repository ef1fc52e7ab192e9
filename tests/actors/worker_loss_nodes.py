"""A CPU node type for the worker-loss test, loaded into Ray's workers through its import path.

Like the code node, it waits on a child process: Ray's force-cancel kills that child before the worker
exits, so the node returns at once, which is what opens the race the test pins down."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pydantic import BaseModel

from nodes.base import Execution, NodeContext, NodeResult, NodeType


class HoldChildConfig(BaseModel):
    seconds: float
    started_dir: str


class HoldChildNode(NodeType[HoldChildConfig]):
    """Runs `sleep <seconds>` as a child process and returns how it ended; marks its start with a file."""

    type_name = "hold_child"
    description = "test node"
    config_model = HoldChildConfig
    execution = Execution.CPU

    async def execute(self, config: HoldChildConfig, ctx: NodeContext) -> NodeResult:
        child = subprocess.Popen(["sleep", str(config.seconds)])
        (Path(config.started_dir) / ctx.node_id).write_text(str(child.pid), encoding="utf-8")
        return NodeResult(output={"child_returncode": child.wait()})


PLUGIN = "tests.actors.worker_loss_nodes:HoldChildNode"
