"""Running the code node directly, the way the job runner would, with its log lines kept."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any

import pytest

from engine.errors import SandboxError
from engine.records import LogLevel
from engine.templating import TemplateContext
from nodes.base import NodeContext, NodeResult
from nodes.code import CodeNode
from nodes.settings import NodeSettings
from tests.support.node_services import standalone_services

NODE = CodeNode()
SETTINGS = NodeSettings(SANDBOX_WALL_CLOCK_S=20, SANDBOX_CPU_S=10, SANDBOX_ALLOW_UNSANDBOXED=False)


@dataclass
class Run:
    logs: list[tuple[LogLevel, str, dict[str, Any]]] = field(default_factory=list)

    async def __call__(
        self, config: dict[str, Any], job_input: Any = None, node_settings: NodeSettings = SETTINGS
    ) -> NodeResult:
        ctx = NodeContext(
            job_id="job-1",
            workflow_id="wf-1",
            node_id="code_node",
            attempt=1,
            scope=TemplateContext(input=job_input if job_input is not None else {}),
            log=lambda level, message, data: self.logs.append((level, message, data)),
            services=standalone_services(node_settings),
        )
        return await NODE.execute(NODE.render_config(config, ctx.scope, ctx.node_id), ctx)

    async def failing(self, code: str, **config: Any) -> str:
        with pytest.raises(SandboxError) as caught:
            await self({"code": textwrap.dedent(code), **config})
        assert caught.value.retryable is False
        return caught.value.message
