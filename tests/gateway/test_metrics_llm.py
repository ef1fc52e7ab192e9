"""Token usage in a finished job's record becomes LLM request and token counters by model, labelled by
name only for the models METRICS_MODELS lists. The job record is built here as the runtime stores it: a
real LLM call needs a model service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from engine.models import WorkflowDefinition
from engine.records import JobRecord, JobStatus, NodeCheckpoint, NodeStatus
from gateway.metrics import ServiceMetrics

START = datetime.now(UTC)


def _node(
    node_id: str, node_type: str, output: Any, usage: dict[str, int], seconds: float = 1
) -> NodeCheckpoint:
    return NodeCheckpoint(
        node_id=node_id,
        node_type=node_type,
        status=NodeStatus.COMPLETED,
        started_at=START,
        finished_at=START + timedelta(seconds=seconds),
        output=output,
        usage=usage,
    )


def test_llm_requests_and_tokens_are_counted_by_model():
    llm = {"prompt": "hi"}
    definition = WorkflowDefinition.model_validate(
        {
            "name": "llm",
            "nodes": [
                {"id": "ask", "type": "llm", "config": {**llm, "model": "gpt-4"}},
                {"id": "chosen", "type": "llm", "config": {**llm, "model": "{{input.model}}"}},
                {"id": "opaque", "type": "llm", "config": {**llm, "model": "{{input.model}}"}},
                {"id": "tenant", "type": "llm", "config": {**llm, "model": "acme-confidential-ft-7"}},
                {
                    "id": "fan",
                    "type": "map",
                    "config": {
                        "items": "{{input.xs}}",
                        "node": {"type": "llm", "config": {**llm, "model": "small"}},
                    },
                },
            ],
        }
    )
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    nodes = {
        "ask": _node("ask", "llm", {"text": "a", "model": "gpt-4-0613"}, usage, seconds=2),
        "chosen": _node("chosen", "llm", {"text": "b", "model": "mini"}, usage),
        "opaque": _node("opaque", "llm", "not a dict", usage),
        "tenant": _node("tenant", "llm", {"text": "c", "model": "acme-confidential-ft-7"}, usage),
        "fan": _node("fan", "map", {"results": [1, 2, 3], "succeeded": 3}, {"prompt_tokens": 30}),
    }
    job = JobRecord(
        id="j",
        owner="o",
        workflow_id="w",
        workflow_version=1,
        status=JobStatus.COMPLETED,
        started_at=START,
        finished_at=START + timedelta(seconds=3),
        nodes=nodes,
    )
    metrics = ServiceMetrics(frozenset({"gpt-4", "mini", "small"}))
    metrics.job_finished(job, definition)

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert value("workflow_llm_requests_total", model="gpt-4") == 1
    assert value("workflow_llm_tokens_total", model="gpt-4", kind="prompt") == 10
    assert value("workflow_llm_tokens_total", model="gpt-4", kind="completion") == 5
    assert value("workflow_llm_requests_total", model="mini") == 1
    assert value("workflow_llm_requests_total", model="unknown") == 1
    assert value("workflow_llm_requests_total", model="small") == 3
    assert value("workflow_llm_tokens_total", model="small", kind="prompt") == 30
    assert value("workflow_llm_requests_total", model="other") == 1, "a model METRICS_MODELS does not list"
    assert value("workflow_llm_tokens_total", model="other", kind="prompt") == 10
    assert "acme-confidential-ft-7" not in metrics.render().decode()
    assert value("workflow_jobs_finished_total", status="completed") == 1
    assert value("workflow_job_duration_seconds_sum", status="completed") == 3
    assert value("workflow_node_duration_seconds_count", node_type="llm", status="completed") == 4
    assert value("workflow_node_duration_seconds_sum", node_type="llm", status="completed") == 5


def test_an_agents_model_turns_are_its_llm_requests():
    agent = {"model": "gpt-4", "prompt": "go", "tools": []}
    definition = WorkflowDefinition.model_validate(
        {"name": "agent", "nodes": [{"id": "helper", "type": "agent", "config": agent}]}
    )
    steps = [{"tool_calls": [], "usage": None}] * 3
    output = {"text": "done", "steps": steps, "usage": {"prompt_tokens": 9}}
    job = JobRecord(
        id="j",
        owner="o",
        workflow_id="w",
        workflow_version=1,
        status=JobStatus.COMPLETED,
        nodes={"helper": _node("helper", "agent", output, {"prompt_tokens": 9})},
    )
    metrics = ServiceMetrics(frozenset({"gpt-4"}))
    metrics.job_finished(job, definition)
    assert metrics.registry.get_sample_value("workflow_llm_requests_total", {"model": "gpt-4"}) == 3
    assert (
        metrics.registry.get_sample_value("workflow_llm_tokens_total", {"model": "gpt-4", "kind": "prompt"})
        == 9
    )
