"""Admin user search over 100,000 users is one indexed query on PostgreSQL (issue 5)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from keyturn.db.engine import create_engine, session_factory
from keyturn.db.migrate import upgrade
from keyturn.db.unit_of_work import SqlUnitOfWork

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.postgres,
    pytest.mark.skipif(
        not os.environ.get("KEYTURN_TEST_DATABASE_URL"),
        reason="the plan is PostgreSQL's: needs KEYTURN_TEST_DATABASE_URL (.ci/run sets it)",
    ),
]

USERS = 100_000


@pytest.fixture
async def seeded() -> AsyncIterator[AsyncEngine]:
    """A private, migrated database holding 100,000 users (dropped afterwards)."""
    base = os.environ["KEYTURN_TEST_DATABASE_URL"]
    name = f"keyturn_search_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    try:
        await upgrade(url)
        async with engine.begin() as connection:
            # Set-based seeding: one statement, no per-row round trips.
            await connection.execute(
                text(
                    "INSERT INTO users (id, email, email_verified, name, disabled, "
                    "created_at, updated_at, lock_count) "
                    "SELECT gen_random_uuid(), 'user' || g || '@example.com', true, "
                    "'Person ' || g, false, now(), now(), 0 "
                    "FROM generate_series(1, :count) AS g"
                ),
                {"count": USERS},
            )
            # Statistics from every row, not a 30,000-row sample: a sample can put one
            # histogram bucket (1% of the rows) on the "user4242" prefix, and the planner
            # then walks the unique email index in order instead (seen once in CI). The
            # plan under test is the one for true statistics.
            await connection.execute(
                text("ALTER TABLE users ALTER COLUMN email SET STATISTICS 1000")
            )
            await connection.execute(
                text("ALTER INDEX ix_users_lower_name_prefix ALTER COLUMN 1 SET STATISTICS 1000")
            )
            await connection.execute(text("ANALYZE users"))
        yield engine
    finally:
        await engine.dispose()
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def test_prefix_search_uses_the_indexes(seeded: AsyncEngine) -> None:
    statements: list[tuple[str, Any]] = []

    def capture(
        _conn: object, _cursor: object, statement: str, parameters: Any, *_args: object
    ) -> None:
        statements.append((statement, parameters))

    event.listen(seeded.sync_engine, "before_cursor_execute", capture)
    try:
        async with SqlUnitOfWork(session_factory(seeded)) as uow:
            found = await uow.users.search("user4242", limit=50, after=None)
    finally:
        event.remove(seeded.sync_engine, "before_cursor_execute", capture)
    emails = [user.email for user in found]
    assert "user4242@example.com" in emails
    assert all(email.startswith("user4242") for email in emails)
    assert len(emails) == 11  # user4242 and user42420 .. user42429
    # One statement finds the users (a second one reads the roles of that page).
    searches = [(sql, params) for sql, params in statements if "FROM users" in sql]
    assert len(searches) == 1
    sql, params = searches[0]
    async with seeded.connect() as connection:
        result = await connection.exec_driver_sql("EXPLAIN " + sql, params)
        plan = "\n".join(str(row[0]) for row in result)
    assert "ix_users_email_prefix" in plan, plan
    assert "ix_users_lower_name_prefix" in plan, plan
    assert "Seq Scan" not in plan, plan
