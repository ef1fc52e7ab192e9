"""The wait node: pauses the job until a named signal arrives or a timer is due.

`signal`: the output is the signal's payload; with `timeout_s` the wait ends after that long by
`on_timeout` (`continue` with a null output, or `fail`). `delay_s` or `until` (an ISO time; without a
zone, UTC): a durable timer, whose output is the time it woke.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.errors import WaitTimedOutError
from engine.records import WaitInfo, WaitKind, utcnow
from nodes.base import NodeContext, NodeResult
from nodes.waiting import MAX_WAIT_S, WaitArrival, WaitingNodeType, deadline_after

SIGNAL_NAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"


class WaitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signal: str | None = Field(
        default=None, pattern=SIGNAL_NAME_PATTERN, description="The name of the signal to wait for."
    )
    delay_s: float | None = Field(default=None, ge=0, le=MAX_WAIT_S, description="Wake after this long.")
    until: datetime | None = Field(default=None, description="Wake at this time (ISO 8601; UTC if no zone).")
    timeout_s: float | None = Field(
        default=None, gt=0, le=MAX_WAIT_S, description="With `signal`: stop waiting after this long."
    )
    on_timeout: Literal["continue", "fail"] = Field(
        default="fail", description="What a timeout does: continue with a null output, or fail the node."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        given = [name for name in ("signal", "delay_s", "until") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of signal, delay_s or until, not {given or 'none'}")
        if self.timeout_s is not None and self.signal is None:
            raise ValueError("timeout_s applies to a signal wait; a timer's delay_s or until is its own end")
        return self


class WaitNode(WaitingNodeType[WaitConfig]):
    type_name = "wait"
    description = "Waits for the signal named `signal` (output: its payload), or until `delay_s` or `until`."
    config_model = WaitConfig

    async def execute(self, config: WaitConfig, ctx: NodeContext) -> NodeResult:
        since = utcnow()
        if config.signal is not None:
            wait = WaitInfo(
                kind=WaitKind.SIGNAL,
                signal=config.signal,
                since=since,
                deadline=deadline_after(since, config.timeout_s),
                settings={"on_timeout": config.on_timeout, "timeout_s": config.timeout_s},
            )
        else:
            until = config.until
            if until is not None and until.tzinfo is None:
                until = until.replace(tzinfo=UTC)
            wait = WaitInfo(
                kind=WaitKind.TIMER, since=since, deadline=until or deadline_after(since, config.delay_s)
            )
        return NodeResult(output=None, wait=wait)

    def finish_wait(self, wait: WaitInfo, arrival: WaitArrival) -> NodeResult:
        if arrival.signal is not None:
            return NodeResult(output=arrival.signal.payload)
        if wait.kind is WaitKind.TIMER:
            return NodeResult(output=arrival.time.isoformat())
        if wait.settings.get("on_timeout") == "continue":
            return NodeResult(output=None)
        raise WaitTimedOutError(f"no signal '{wait.signal}' within {wait.settings.get('timeout_s')} s")
