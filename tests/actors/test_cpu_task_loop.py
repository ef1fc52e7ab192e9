"""A CPU node attempt's body as a Ray worker runs it, without Ray: under uvloop's event loop policy, which
Ray's workers install, the sandboxed run still spawns from asyncio's own loop (uvloop's spawn forks the
whole worker: 10 ms against 1.3 ms), later attempts reuse that loop, and the worker's policy is back after
each attempt."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from actors.ray_runtime import remote_calls
from actors.ray_runtime.remote_calls import RemoteCall, run_cpu_node
from nodes.settings import NodeSettings

pytestmark = pytest.mark.timeout(60)
DOUBLING = "def process(input_data):\n    return {'output': input_data * 2}\n"


def attempt(n: int) -> RemoteCall:
    config = {"code": DOUBLING, "input_mapping": {"input_data": n}}
    return RemoteCall("code", config, "job-1", "wf-1", f"double-{n}", 1, NodeSettings())


def test_attempts_under_uvloops_policy_run_on_one_asyncio_loop_and_leave_the_policy_as_it_was():
    worker_policy = uvloop.EventLoopPolicy()
    before = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(worker_policy)
    try:
        outcomes = [run_cpu_node(attempt(n)) for n in (3, 4)]
        assert asyncio.get_event_loop_policy() is worker_policy
    finally:
        asyncio.set_event_loop_policy(before)
    assert [outcome.error for outcome in outcomes] == [None, None]
    assert [outcome.result.output for outcome in outcomes if outcome.result] == [{"output": 6}, {"output": 8}]
    loop = remote_calls._task_loop().get_loop()
    assert type(loop) is asyncio.SelectorEventLoop and not loop.is_closed()
