"""Counts the SQL statements that one piece of test code causes, and nothing else.

The app's background tasks (the audit sealer, the key schedule, the audit batch) run SQL
on the same engines whenever they are due. A hook on every engine would count theirs too
and fail now and then (a CI run caught the sealer inside a request's window). So each
statement is counted only when it runs in the context the block was entered in, or in a
task started from it: a request sent through ``httpx.ASGITransport`` runs in the test's
own task, and SQLAlchemy's greenlets carry the caller's context (``gr_context``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")

_WATCHING: ContextVar[object | None] = ContextVar("sql_spy_watching", default=None)


@contextmanager
def statements_run_here() -> Iterator[list[str]]:
    """Every SQL statement run in this context (and tasks it starts) while the block runs."""
    seen: list[str] = []
    mark = object()

    def before_cursor_execute(*args: Any) -> None:
        if _WATCHING.get() is mark:
            seen.append(str(args[2]))

    token = _WATCHING.set(mark)
    event.listen(Engine, "before_cursor_execute", before_cursor_execute)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", before_cursor_execute)
        _WATCHING.reset(token)


def queries(statements: list[str]) -> list[str]:
    """The statements without transaction control (the driver's business, not the query's)."""
    return [s for s in statements if not s.lstrip().upper().startswith(TRANSACTION_CONTROL)]
