"""Structured logging: one JSON object per line (LOG_FORMAT=json) or plain text, to stdout and LOG_FILE.

Every handler carries the RedactingFilter (config/log_redaction.py), so no credential reaches a log line;
uvicorn's loggers (its access log included) write through the same handlers, in the same format.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config.log_redaction import RECORD_ATTRIBUTES, RedactingFilter
from config.settings import LogFormat

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class JsonFormatter(logging.Formatter):
    """Renders a record and any `extra={...}` fields as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in RECORD_ATTRIBUTES})
        if record.exc_text:
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(
    level: str = "INFO", fmt: LogFormat = LogFormat.JSON, log_file: Path | None = None
) -> None:
    formatter: logging.Formatter = (
        JsonFormatter()
        if fmt is LogFormat.JSON
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    redacting = RedactingFilter()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(redacting)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in UVICORN_LOGGERS:
        # uvicorn's own logging config (`uvicorn --factory ...` without --log-config) gives these
        # loggers handlers of their own that would write past the filter and in another format.
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    for other in logging.Logger.manager.loggerDict.values():
        for handler in getattr(other, "handlers", ()):
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(redacting)
