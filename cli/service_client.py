"""A small client of a running service's REST API and its Server-Sent Events, for the command line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from engine.records import JobEvent

API = "/api/v1"
REQUEST_TIMEOUT_S = 30.0
SSE_RECONNECTS = 5
SSE_RECONNECT_DELAY_S = 0.5
LOG_PAGE_SIZE = 500


class ServiceError(Exception):
    """The service answered with an error, or could not be reached (status None)."""

    def __init__(self, message: str, status: int | None = None, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.problems = problems or []

    @property
    def is_client_error(self) -> bool:
        """The request was refused for what it carried (bad definition, input or token)."""
        return self.status is not None and 400 <= self.status < 500


class ServiceClient:
    def __init__(self, url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=REQUEST_TIMEOUT_S)

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.aclose()

    async def create_workflow(self, definition: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", f"{API}/workflows", json=definition)

    async def execute(self, workflow_id: str, input_data: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", f"{API}/workflows/{workflow_id}/execute", json=input_data)

    async def get_job(self, job_id: str) -> dict[str, Any]:
        return await self._call("GET", f"{API}/jobs/{job_id}")

    async def rerun_job(
        self, job_id: str, from_nodes: list[str], input_data: dict[str, Any] | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"from_nodes": from_nodes}
        if input_data is not None:
            body["input"] = input_data
        return await self._call("POST", f"{API}/jobs/{job_id}/rerun", json=body)

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        return await self._call("POST", f"{API}/jobs/{job_id}/cancel")

    async def signal_job(
        self, job_id: str, name: str, payload: dict[str, Any], idempotency_key: str | None
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return await self._call("POST", f"{API}/jobs/{job_id}/signals/{name}", json=payload, headers=headers)

    async def list_jobs(self, status: list[str], workflow_id: str | None, limit: int) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "status": status}
        if workflow_id:
            params["workflow_id"] = workflow_id
        return await self._call("GET", f"{API}/jobs", params=params)

    async def list_schedules(self, limit: int) -> dict[str, Any]:
        return await self._call("GET", f"{API}/schedules", params={"limit": limit})

    async def logs(self, job_id: str) -> list[dict[str, Any]]:
        """Every log entry of the job, oldest first, page by page."""
        entries: list[dict[str, Any]] = []
        while True:
            page = await self._call(
                "GET", f"{API}/jobs/{job_id}/logs", params={"offset": len(entries), "limit": LOG_PAGE_SIZE}
            )
            entries.extend(page["items"])
            if not page["items"] or len(entries) >= page["total"]:
                return entries

    async def job_events(self, job_id: str) -> AsyncIterator[JobEvent]:
        """The job's events from its first, live, until its last; a dropped connection is resumed
        with Last-Event-ID, so no event is missed or repeated."""
        last_id: str | None = None
        reconnects = 0
        while True:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                async with self._http.stream(
                    "GET", f"{API}/jobs/{job_id}/events", headers=headers, timeout=httpx.Timeout(None)
                ) as response:
                    if response.status_code != 200:
                        await response.aread()
                        raise _error_from(response)
                    async for event in _parse_sse(response.aiter_lines()):
                        last_id = event.id or last_id
                        reconnects = 0
                        yield event
                        if event.ends_job:
                            return
                return
            except httpx.TransportError as exc:
                reconnects += 1
                if reconnects > SSE_RECONNECTS:
                    raise ServiceError(f"lost the event stream of job {job_id}: {exc}") from None
                await asyncio.sleep(SSE_RECONNECT_DELAY_S)

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceError(f"cannot reach the service at {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise _error_from(response)
        return response.json()


def _error_from(response: httpx.Response) -> ServiceError:
    """The service's error shape is {"detail": ..., "errors": [{"node_id", "field", "message"}]}."""
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:500]}
    detail = body.get("detail") if isinstance(body, dict) else body
    problems = []
    for problem in (body.get("errors") or []) if isinstance(body, dict) else []:
        where = ".".join(part for part in (problem.get("node_id"), problem.get("field")) if part)
        problems.append(f"{where}: {problem.get('message')}" if where else str(problem.get("message")))
    status = response.status_code
    return ServiceError(f"the service answered {status}: {detail}", status, problems)


async def _parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[JobEvent]:
    fields: dict[str, str] = {}
    async for line in lines:
        if line.startswith(":"):
            continue
        if line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
            continue
        if "data" in fields:
            event = JobEvent.model_validate(json.loads(fields["data"]))
            yield event.model_copy(update={"id": fields.get("id") or event.id})
        fields = {}
