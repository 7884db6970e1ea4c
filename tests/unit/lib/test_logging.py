"""Structured log fields never collide with LogRecord attributes; lines are clean JSON."""

from __future__ import annotations

import ast
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.lib.logging import JsonFormatter, configure_logging, get_logger

APP = Path(__file__).resolve().parents[3] / "app"
LEVEL_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "log"}
RECORD_ATTRIBUTES = sorted(set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"})


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """Log output at the default level (INFO), as the service writes it."""
    configure_logging("INFO")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    yield stream
    root.handlers[:] = []


def _logger_calls(tree: ast.AST) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LEVEL_METHODS
        ):
            yield node


def test_no_module_passes_extra_to_a_logger() -> None:
    """Every log call goes through EventLogger, whose fields cannot collide (no raw ``extra=``)."""
    offenders = []
    for path in sorted(APP.rglob("*.py")):
        if path == APP / "lib" / "logging.py":  # EventLogger itself nests the fields in one key
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        offenders.extend(
            f"{path.relative_to(APP.parent)}:{call.lineno}"
            for call in _logger_calls(tree)
            if any(keyword.arg == "extra" for keyword in call.keywords)
        )
    assert offenders == []


def test_every_logger_of_the_app_is_an_event_logger() -> None:
    for path in sorted(APP.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name != "logging.py":
            assert "logging.getLogger(" not in text, f"{path}: use app.lib.logging.get_logger"


def test_fields_named_like_record_attributes_are_logged_at_the_default_level(lines: io.StringIO) -> None:
    fields = {name: f"value-of-{name}" for name in RECORD_ATTRIBUTES}
    get_logger("lethe.test").info("manifest file loaded", **fields)
    (line,) = lines.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["message"] == "manifest file loaded"
    assert entry["logger"] == "lethe.test"
    for name, value in fields.items():
        written = f"{name}_" if name in ("message", "time", "level", "logger") else name
        assert entry[written] == value, name


def test_uvicorn_color_duplicates_are_dropped(lines: io.StringIO) -> None:
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]",
        7,
        extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]"},
    )
    entry = json.loads(lines.getvalue())
    assert entry == {
        "time": entry["time"],
        "level": "info",
        "logger": "uvicorn.error",
        "message": "Started server process [7]",
    }
    assert "\x1b" not in lines.getvalue()
