"""JSON log lines carry the request id; the standard library joins the same stream."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from keyturn.observability.logging import configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.mark.usefixtures("restore_logging")
def test_lines_are_json_with_the_request_id(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug")
    structlog.contextvars.bind_contextvars(request_id="req-12345678")
    structlog.get_logger("keyturn.test").info("hello", answer=42)
    logging.getLogger("uvicorn.error").warning("from the standard library")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert [line["event"] for line in lines] == ["hello", "from the standard library"]
    assert all(line["request_id"] == "req-12345678" for line in lines)
    assert lines[0]["answer"] == 42
    assert lines[0]["level"] == "info"
    assert logging.getLogger().level == logging.DEBUG


@pytest.mark.usefixtures("restore_logging")
def test_unknown_level_falls_back_to_info() -> None:
    configure_logging("chatty")
    assert logging.getLogger().level == logging.INFO


@pytest.mark.usefixtures("restore_logging")
def test_log_injection_is_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    """v5.0.0-16.4.1: newlines and ANSI escapes in logged values cannot forge lines."""
    configure_logging("info")
    hostile = 'evil@example.com\n{"event": "login.succeeded"}\x1b[31m'
    structlog.get_logger("keyturn.test").info("login", user_agent=hostile)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert "\x1b" not in lines[0]
    assert json.loads(lines[0])["user_agent"] == hostile
