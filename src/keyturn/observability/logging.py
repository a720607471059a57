"""Logs through structlog: JSON lines or readable console lines, one stream for all.

The request id rides in a context variable onto every line. ``json`` (production's default)
is one object a line for a log pipeline; ``console`` (dev's default) is for a person
reading a terminal.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LogFormat = Literal["console", "json"]


# C0 and C1 control characters (newline, ESC...) as visible escapes.
_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}


def _escape_controls(
    _logger: object, _name: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """A console line is one line: a newline or ANSI escape in a logged value (a hostile
    user agent, an email) cannot forge a line or repaint the terminal. JSON escapes them
    itself; a formatted traceback keeps its lines."""
    for key, value in event_dict.items():
        if isinstance(value, str) and key != "exception":
            event_dict[key] = value.translate(_CONTROLS)
    return event_dict


def _renderers(fmt: LogFormat) -> list[structlog.types.Processor]:
    if fmt == "console":
        # No colours: the stream is often a file or a pipe.
        return [_escape_controls, structlog.dev.ConsoleRenderer(colors=False)]
    return [structlog.processors.JSONRenderer()]


def configure_logging(level: str = "info", fmt: LogFormat = "json") -> None:
    """Routes structlog and the standard library (uvicorn, sqlalchemy) to one stream."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        # The level check first: a line below the level costs one comparison, not the
        # context merge and timestamp before the standard library drops it (issue 18: the
        # access line of every request ran them at KEYTURN_LOG_LEVEL=warning too).
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                *_renderers(fmt),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # Drivers log statements with their bound parameters (emails, hashes, digests) at
    # debug/info: never, whatever the level asked for. Alembic's info lines ("Context impl
    # SQLiteImpl", each step) are noise at start; `keyturn migrate` reports what it applied.
    for name in ("aiosqlite", "asyncpg", "sqlalchemy", "alembic"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    # uvicorn's own access log would duplicate ours (and lacks the request id).
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
