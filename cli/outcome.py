"""How a job's end is shown: one JSON object on stdout, and the exit code its status gives."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TextIO

from cli.inputs import EXIT_COMPLETED, EXIT_FAILED
from engine.records import JobRecord, JobStatus


@dataclass(frozen=True)
class Outcome:
    job_id: str
    status: JobStatus
    result: Any
    error: dict[str, Any] | None

    @classmethod
    def from_record(cls, job: JobRecord) -> Outcome:
        return cls(job.id, job.status, job.result, job.error.model_dump() if job.error else None)

    @classmethod
    def from_json(cls, job: dict[str, Any]) -> Outcome:
        return cls(job["id"], JobStatus(job["status"]), job.get("result"), job.get("error"))

    @property
    def exit_code(self) -> int:
        return EXIT_COMPLETED if self.status is JobStatus.COMPLETED else EXIT_FAILED

    def write(self, stream: TextIO) -> None:
        body = {
            "job_id": self.job_id,
            "status": self.status.value,
            "result": self.result,
            "error": self.error,
        }
        stream.write(json.dumps(body, indent=2, default=str) + "\n")
        stream.flush()
