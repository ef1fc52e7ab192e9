"""Runs a guide's examples against a live service, in order, and says where one stops matching.

Scripts run with the variables a reader sets up first: BASE_URL, TOKEN (a token for the user `alice`),
JWT_SECRET, plus WORKFLOW_ID and JOB_ID of the last workflow example and whatever `save=` kept. Text the
suite must point elsewhere (the httpbin.org stand-in) is replaced in every block before it runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.docs.blocks import Block, Example
from tests.docs.subset import at_path, json_documents, mismatches, missing_lines

TERMINAL = frozenset({"completed", "failed", "cancelled"})
JOB_TIMEOUT_S = 60.0
SCRIPT_TIMEOUT_S = 60.0
SHOWN_OUTPUT_CHARS = 3000
INTERPRETERS = {"curl": ("bash", "-euo", "pipefail", "-c"), "client": ("python3", "-c")}


class ExampleFailed(AssertionError):
    def __init__(self, block: Block, message: str) -> None:
        super().__init__(f"{block.where} ({block.language} {block.role}): {message}")


@dataclass
class DocService:
    base_url: str
    token: str
    jwt_secret: str
    replacements: Mapping[str, str] = field(default_factory=dict)


class ExampleRunner:
    def __init__(self, service: DocService, http: httpx.AsyncClient) -> None:
        self.service = service
        self.http = http
        self.headers = {"Authorization": f"Bearer {service.token}"}
        self.variables = {
            "BASE_URL": service.base_url,
            "TOKEN": service.token,
            "JWT_SECRET": service.jwt_secret,
        }

    def text(self, block: Block) -> str:
        text = block.text
        for old, new in self.service.replacements.items():
            text = text.replace(old, new)
        return text

    def json(self, block: Block) -> Any:
        try:
            return json.loads(self.text(block))
        except json.JSONDecodeError as exc:
            raise ExampleFailed(block, f"not valid JSON: {exc}") from None

    async def run(self, example: Example) -> None:
        if example.role == "workflow":
            await self._workflow(example)
        else:
            await self._script(example)

    # ------------------------------------------------------------ workflows

    async def _workflow(self, example: Example) -> None:
        block = example.block
        created = await self.http.post("/api/v1/workflows", json=self.json(block), headers=self.headers)
        if "invalid" in block.options:
            if created.status_code != 422:
                raise ExampleFailed(block, f"expected 422, got {created.status_code}: {created.text}")
            self._match(example, created.json())
            return
        if created.status_code != 201:
            raise ExampleFailed(
                block, f"creating the workflow answered {created.status_code}: {created.text}"
            )
        workflow_id = created.json()["id"]
        job_input = self.json(example.input) if example.input else {}
        started = await self.http.post(
            f"/api/v1/workflows/{workflow_id}/execute", json=job_input, headers=self.headers
        )
        if started.status_code != 202:
            raise ExampleFailed(block, f"executing answered {started.status_code}: {started.text}")
        job = started.json()
        self.variables.update(WORKFLOW_ID=workflow_id, JOB_ID=job["id"])
        if "nowait" not in block.options:
            job = await self._wait(block, job["id"])
            if not example.expected and job["status"] != "completed":
                raise ExampleFailed(block, f"the job ended {job['status']}: {json.dumps(job['error'])}")
        self._match(example, job)

    async def _wait(self, block: Block, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while True:
            response = await self.http.get(f"/api/v1/jobs/{job_id}", headers=self.headers)
            job: dict[str, Any] = response.json()
            if job.get("status") in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise ExampleFailed(
                    block, f"job {job_id} still {job.get('status')} after {JOB_TIMEOUT_S:g} s"
                )
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------ scripts

    async def _script(self, example: Example) -> None:
        block = example.block
        if not example.expected:
            raise ExampleFailed(block, "add an expected block showing what it prints")
        process = await asyncio.create_subprocess_exec(
            *INTERPRETERS[example.role],
            self.text(block),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **self.variables},
        )
        try:
            async with asyncio.timeout(SCRIPT_TIMEOUT_S):
                stdout, stderr = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise ExampleFailed(block, f"still running after {SCRIPT_TIMEOUT_S:g} s") from None
        output, errors = stdout.decode(), stderr.decode()
        if process.returncode != 0:
            raise ExampleFailed(
                block,
                f"exited with {process.returncode}\nstdout:\n{output[-SHOWN_OUTPUT_CHARS:]}\n"
                f"stderr:\n{errors[-SHOWN_OUTPUT_CHARS:]}",
            )
        documents = json_documents(output)
        for expected in example.expected:
            if expected.language == "text":
                missing = missing_lines(self.text(expected), output)
                if missing:
                    raise ExampleFailed(
                        expected, f"lines not printed: {missing}\noutput:\n{output[-SHOWN_OUTPUT_CHARS:]}"
                    )
            elif not documents:
                raise ExampleFailed(expected, f"no JSON in the output:\n{output[-SHOWN_OUTPUT_CHARS:]}")
        self._match(example, documents[-1] if documents else None)
        self._save(block, documents)

    def _save(self, block: Block, documents: list[Any]) -> None:
        if "save" not in block.options:
            return
        name, _, path = block.options["save"].partition(":")
        if not documents:
            raise ExampleFailed(block, f"save={block.options['save']}: it printed no JSON")
        try:
            self.variables[name] = str(at_path(documents[-1], path or "id"))
        except (KeyError, IndexError, TypeError, ValueError):
            raise ExampleFailed(
                block, f"save={block.options['save']}: no {path or 'id'} in its output"
            ) from None

    # ------------------------------------------------------------ results

    def _match(self, example: Example, actual: Any) -> None:
        for expected in example.expected:
            if expected.language != "json":
                continue
            problems = mismatches(self.json(expected), actual)
            if problems:
                shown = json.dumps(actual, indent=1)[-SHOWN_OUTPUT_CHARS:]
                raise ExampleFailed(expected, "\n".join(problems) + f"\nactual:\n{shown}")
