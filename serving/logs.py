"""The server's log lines: human-readable by default, one JSON object per line with
``--log-format json`` (what log shippers parse without a pattern).

A JSON line holds ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``event`` (the message),
``model_version`` (the model serving when the line was written, once one is loaded), and
``exception`` (the traceback) where there is one.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Final, Literal

LogFormat = Literal["text", "json"]
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ModelVersion(logging.Filter):
    """Stamps every record with the version of the model being served (``set`` on each load)."""

    version = ""

    @classmethod
    def set(cls, version: str) -> None:
        cls.version = version

    def filter(self, record: logging.LogRecord) -> bool:
        record.model_version = self.version
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        version = getattr(record, "model_version", "")
        if version:
            entry["model_version"] = version
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: LogFormat) -> None:
    """The root logger: ``level``, and text or JSON lines on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    handler.addFilter(ModelVersion())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
