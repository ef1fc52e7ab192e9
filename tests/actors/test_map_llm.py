"""Map fan-out of llm nodes on real Ray against the OpenAI-compatible test server on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.ray_runtime.bootstrap import start_service_runtime
from engine.models import WorkflowDefinition
from engine.records import JobStatus
from tests.support.openai_server import OpenAITestServer
from tests.support.ray_jobs import finished, settings_for, wait_for

pytestmark = pytest.mark.slow


def llm_map(max_concurrency: int) -> WorkflowDefinition:
    child = {"type": "llm", "config": {"model": "test-model", "prompt": "summarise {{item}} ({{index}})"}}
    fan = {
        "id": "fan",
        "type": "map",
        "config": {"items": "{{input.items}}", "node": child, "max_concurrency": max_concurrency},
    }
    return WorkflowDefinition.model_validate({"name": "llm-map", "nodes": [fan], "edges": []})


@pytest.mark.parametrize(
    ("items", "latency_s", "cap"),
    [
        pytest.param(1_000, 0.2, 200, id="1000-calls-of-200ms-capped-at-200"),
        pytest.param(10_000, 0.0, 500, id="10000-items"),
    ],
)
@pytest.mark.timeout(240)
async def test_a_map_of_llm_calls_finishes_in_order_within_the_cap(
    ray_cluster, tmp_path: Path, items, latency_s, cap
):
    with OpenAITestServer(latency_s=latency_s, max_in_flight=cap, record_requests=False) as server:
        settings = settings_for(
            tmp_path / "data", WARM_POOL_SIZE=0, MODEL_SERVICE_URL=server.url, LLM_MAX_CONCURRENCY=cap
        )
        runtime = await start_service_runtime(settings)
        try:
            workflow = await runtime.store.create_workflow("alice", llm_map(cap))
            job = await runtime.controller.execute_workflow(
                workflow.id, {"items": [f"doc-{i}" for i in range(items)]}, owner="alice"
            )
            done = await wait_for(runtime, job.id, finished, timeout_s=200)
        finally:
            await runtime.close()
        assert done.status is JobStatus.COMPLETED, done.error
        output = done.nodes["fan"].output
        assert (output["succeeded"], output["failed"]) == (items, 0)
        assert [r["text"] for r in output["results"][:3]] == [
            f"echo: summarise doc-{i} ({i})" for i in range(3)
        ]
        assert output["results"][-1]["text"] == f"echo: summarise doc-{items - 1} ({items - 1})"
        assert server.peak_open <= cap
        assert done.nodes["fan"].usage is not None and done.nodes["fan"].usage["total_tokens"] > 0


@pytest.mark.parametrize("policy", ["collect", "min_success_ratio"])
@pytest.mark.timeout(120)
async def test_a_map_of_llm_calls_that_all_run_finishes_under_each_policy(
    ray_cluster, tmp_path: Path, policy
):
    """Policies that run every item must end when the last item does, on the executor batch path."""
    with OpenAITestServer(latency_s=0.05, max_in_flight=20, record_requests=False) as server:
        server.inject(400, count=3, message="bad prompt")
        settings = settings_for(
            tmp_path / "data", WARM_POOL_SIZE=0, MODEL_SERVICE_URL=server.url, LLM_MAX_CONCURRENCY=20
        )
        runtime = await start_service_runtime(settings)
        try:
            definition = llm_map(10)
            definition.nodes[0].config.update({"failure_policy": policy, "min_success_ratio": 0.9})
            workflow = await runtime.store.create_workflow("alice", definition)
            job = await runtime.controller.execute_workflow(
                workflow.id, {"items": [f"doc-{i}" for i in range(60)]}, owner="alice"
            )
            done = await wait_for(runtime, job.id, finished, timeout_s=90)
        finally:
            await runtime.close()
        assert done.status is JobStatus.COMPLETED, done.error
        output = done.nodes["fan"].output
        assert (output["succeeded"], output["failed"]) == (57, 3)
        assert all("bad prompt" in error["error"]["message"] for error in output["errors"])


def llm_code_graph_map(max_concurrency: int) -> WorkflowDefinition:
    """Per item: an llm call, then user code over its text (a Ray task sent from the executor), then a
    transform that reads both and the workflow's own `prep` node."""
    code = "def process(text):\n    return {'words': len(text.split())}\n"
    graph = {
        "nodes": [
            {"id": "ask", "type": "llm", "config": {"model": "test-model", "prompt": "about {{item}}"}},
            {
                "id": "count",
                "type": "code",
                "config": {"code": code, "input_mapping": {"text": "{{ask.output.text}}"}},
            },
            {
                "id": "shape",
                "type": "transform",
                "config": {
                    "template": {
                        "text": "{{ask.output.text}}",
                        "words": "{{count.output.words}}",
                        "tag": "{{prep.output}}",
                        "i": "{{index}}",
                    }
                },
            },
        ],
        "edges": [{"source": "ask", "target": "count"}, {"source": "count", "target": "shape"}],
    }
    prep = {"id": "prep", "type": "transform", "config": {"template": "tag-{{input.tag}}"}}
    fan = {
        "id": "fan",
        "type": "map",
        "config": {"items": "{{input.items}}", "graph": graph, "max_concurrency": max_concurrency},
    }
    return WorkflowDefinition.model_validate(
        {"name": "graph-map", "nodes": [prep, fan], "edges": [{"source": "prep", "target": "fan"}]}
    )


@pytest.mark.timeout(240)
async def test_a_map_over_a_sub_graph_runs_llm_and_code_nodes_per_item_on_ray(ray_cluster, tmp_path: Path):
    with OpenAITestServer(latency_s=0.05, max_in_flight=8, record_requests=False) as server:
        settings = settings_for(
            tmp_path / "data", WARM_POOL_SIZE=0, MODEL_SERVICE_URL=server.url, LLM_MAX_CONCURRENCY=8
        )
        runtime = await start_service_runtime(settings)
        try:
            workflow = await runtime.store.create_workflow("alice", llm_code_graph_map(4))
            job = await runtime.controller.execute_workflow(
                workflow.id, {"items": [f"doc {i}" for i in range(6)], "tag": "t"}, owner="alice"
            )
            done = await wait_for(runtime, job.id, finished, timeout_s=200)
        finally:
            await runtime.close()
    assert done.status is JobStatus.COMPLETED, done.error
    output = done.nodes["fan"].output
    assert output["results"] == [
        {"text": f"echo: about doc {i}", "words": 4, "tag": "tag-t", "i": i} for i in range(6)
    ]
    assert server.peak_open <= 8
