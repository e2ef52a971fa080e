"""Structured logging for the exporter: one JSON object per line (or plain text for a terminal).

Log pipelines (Loki, Cloud Logging, Elasticsearch) index JSON fields, so a collector error is
findable by ``collector="nvml"`` instead of by regex. Callers attach fields with
``log.warning("sample failed", extra={"fields": {"collector": "nvml", "error": msg}})``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

LOGGER_NAME = "npuobs.exporter"


class JsonFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "logger": ..., "msg": ..., <fields>}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, sort_keys=False)


class TextFormatter(logging.Formatter):
    """``time level msg key=value ...`` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v!r}" for k, v in (getattr(record, "fields", None) or {}).items())
        line = f"{self.formatTime(record)} {record.levelname.lower()} {record.getMessage()} {fields}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(log_format: str = "json", level: int = logging.INFO, stream: TextIO | None = None) -> logging.Handler:
    """Send npuobs.exporter logs to ``stream`` (stderr) in ``log_format``; returns the handler.

    Only the exporter's logger is configured (not the root), so embedding the exporter in the
    demo process does not reformat everyone else's logs.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logger = logging.getLogger(LOGGER_NAME)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler
