"""Log lines as JSON objects: every field a shipper reads, the serving model's version once one
is loaded, a traceback kept inside its line."""

from __future__ import annotations

import json
import logging

import pytest

from serving.logs import JsonFormatter, ModelVersion, configure_logging


def _record(message: str, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("serving.server", logging.WARNING, __file__, 1, message, (), exc_info)


def test_a_json_line_holds_every_field_and_the_model_version() -> None:
    record = _record("model %s loaded")
    ModelVersion.set("sasrec-20261204T000000Z-abcdef12")
    try:
        ModelVersion().filter(record)
        entry = json.loads(JsonFormatter().format(record))
    finally:
        ModelVersion.set("")
    assert entry["level"] == "warning" and entry["logger"] == "serving.server"
    assert entry["event"] == "model %s loaded"
    assert entry["model_version"] == "sasrec-20261204T000000Z-abcdef12"
    assert entry["time"].endswith("+00:00")


def test_a_traceback_stays_inside_one_line() -> None:
    line = JsonFormatter().format(_record("failed", exc=True))
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_the_root_logger_writes_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure_logging("info", "json")
        logging.getLogger("serving.test").info("hello %s", "world")
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert json.loads(line)["event"] == "hello world"
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
