"""The workflow the browser tests and the README's screenshot run: a conditional routes to a map of one
LLM call per document (the other branch is skipped), then an LLM digest that streams its tokens, then
the end node. Its LLM calls go to MODEL_SERVICE_URL (the test server in tests and the screenshot)."""

from __future__ import annotations

from typing import Any

MAP_CONCURRENCY = 4


def review_workflow(name: str = "Review documents") -> dict[str, Any]:
    return {
        "name": name,
        "description": "route by count, summarise each document with an LLM, stream a digest",
        "nodes": [
            {"id": "start", "type": "start"},
            {
                "id": "route",
                "type": "conditional",
                "config": {
                    "condition": "{{input.documents | length}} > 3",
                    "true_edge": "summarise",
                    "false_edge": "quick",
                },
            },
            {
                "id": "summarise",
                "type": "map",
                "config": {
                    "items": "{{input.documents}}",
                    "max_concurrency": MAP_CONCURRENCY,
                    "node": {
                        "type": "llm",
                        "config": {"model": "test-model", "prompt": "Summarise: {{item}}"},
                    },
                },
            },
            {"id": "quick", "type": "transform", "config": {"template": {"only": "{{input.documents}}"}}},
            {
                "id": "digest",
                "type": "llm",
                "config": {
                    "model": "test-model",
                    "stream": True,
                    "prompt": "Write a digest of {{summarise.output.total}} summaries",
                },
            },
            {"id": "end", "type": "end"},
        ],
        "edges": [
            {"source": "start", "target": "route"},
            {"source": "route", "target": "summarise"},
            {"source": "route", "target": "quick"},
            {"source": "summarise", "target": "digest"},
            {"source": "digest", "target": "end"},
            {"source": "quick", "target": "end"},
        ],
    }


def documents(count: int) -> dict[str, Any]:
    return {"documents": [f"document {index + 1}: quarterly figures" for index in range(count)]}
