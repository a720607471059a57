"""A single-write session (``db/engine.py``) never sends a write twice: in autocommit the
first send may have committed before its connection died. A read is retried as before."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from keyturn.db.engine import _SingleWriteSession
from keyturn.db.models import UserRow

pytestmark = pytest.mark.anyio


def _dead_connection() -> DBAPIError:
    return DBAPIError("INSERT ...", None, ConnectionError("closed"), connection_invalidated=True)


@pytest.mark.parametrize(
    ("statement", "sends"),
    [
        (update(UserRow).where(UserRow.id == uuid.uuid4()).values(name="x"), 1),
        (select(UserRow.id).limit(1), 2),
    ],
    ids=["write-not-resent", "read-retried"],
)
async def test_a_write_on_a_dead_connection_is_not_sent_again(statement: Any, sends: int) -> None:
    sent: list[Any] = []

    async def run(sent_statement: Any) -> str:
        sent.append(sent_statement)
        if len(sent) == 1:
            raise _dead_connection()
        return "answer"

    session = _SingleWriteSession()
    try:
        if sends == 1:
            with pytest.raises(DBAPIError):
                await session._first_retried(run, statement)
        else:
            assert await session._first_retried(run, statement) == "answer"
    finally:
        await session.close()
    assert sent == [statement] * sends
