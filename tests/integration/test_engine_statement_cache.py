"""``create_engine(statement_cache=False)`` (``KEYTURN_DATABASE_STATEMENT_CACHE=false``)
leaves no named prepared statement on the server connection, in a transaction and in
autocommit; with the default cache the same statements stay there by name (what breaks a
transaction-mode pooler, tests/e2e/test_pgbouncer.py). SQLite accepts and ignores it.
"""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from keyturn.db.engine import create_engine

pytestmark = pytest.mark.anyio

PG_URL = os.environ.get("KEYTURN_TEST_DATABASE_URL") or None
NAMED = text("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE '__asyncpg%'")


async def _named_statements(*, statement_cache: bool, autocommit: bool) -> int:
    assert PG_URL is not None
    engine = create_engine(PG_URL, pool_size=1, statement_cache=statement_cache)
    if autocommit:
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT CAST(:n AS integer) + 1"), {"n": 41})
            return int((await connection.execute(NAMED)).scalar_one())
    finally:
        await engine.dispose()


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="needs KEYTURN_TEST_DATABASE_URL")
@pytest.mark.parametrize("autocommit", [False, True], ids=["transaction", "autocommit"])
async def test_without_the_cache_no_statement_is_kept_by_name(autocommit: bool) -> None:
    assert await _named_statements(statement_cache=True, autocommit=autocommit) > 0
    assert await _named_statements(statement_cache=False, autocommit=autocommit) == 0


async def test_sqlite_ignores_the_setting() -> None:
    engine = create_engine("sqlite+aiosqlite:///:memory:", statement_cache=False)
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT 41 + 1"))).scalar_one() == 42
    finally:
        await engine.dispose()
