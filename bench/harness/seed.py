"""Fast user seeding: one precomputed hash, rows streamed with PostgreSQL COPY.

Hashing 100,000 passwords at the production cost would take most of an hour on two
cores; every seeded user shares one password and therefore one hash computed once (a
real argon2id hash with the production parameters, so logins cost exactly what they
cost in production). Rows go in through ``COPY`` (asyncpg ``copy_records_to_table``) in
batches, with a rich progress bar.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from keyturn.security.passwords import OWASP_MIN, PasswordHasher

PASSWORD = "bench-Password-7f3k9q-ok"
BATCH = 20_000

Row = tuple[Any, ...]


def user_email(index: int) -> str:
    return f"bench-user-{index:07d}@example.com"


def production_hash(password: str = PASSWORD) -> str:
    """One argon2id hash under Keyturn's production parameters (m=19456 KiB, t=2, p=1)."""
    return PasswordHasher(OWASP_MIN).hash(password)


def keyturn_rows(password_hash: str) -> Callable[[int], Row]:
    now = datetime.now(UTC)

    def row(index: int) -> Row:
        return (uuid.uuid4(), user_email(index), True, f"Bench {index}", password_hash,
                False, now, now, None, 0)  # fmt: skip

    return row


KEYTURN_COLUMNS = (
    "id", "email", "email_verified", "name", "password_hash",
    "disabled", "created_at", "updated_at", "locked_until", "lock_count",
)  # fmt: skip


def fastapi_users_rows(password_hash: str) -> Callable[[int], Row]:
    def row(index: int) -> Row:
        return (uuid.uuid4(), user_email(index), password_hash, True, False, True)

    return row


FASTAPI_USERS_COLUMNS = (
    "id",
    "email",
    "hashed_password",
    "is_active",
    "is_superuser",
    "is_verified",
)


def _batches(count: int, make: Callable[[int], Row]) -> Iterator[list[Row]]:
    for start in range(0, count, BATCH):
        yield [make(index) for index in range(start, min(start + BATCH, count))]


async def _copy(
    dsn: str, table: str, columns: Sequence[str], count: int, make: Callable[[int], Row]
) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        ) as progress:
            task = progress.add_task(f"seeding {table}", total=count)
            for batch in _batches(count, make):
                await conn.copy_records_to_table(table, records=batch, columns=list(columns))
                progress.advance(task, len(batch))
        await conn.execute(f'ANALYZE "{table}"')  # our own table name, never input
    finally:
        await conn.close()


def seed(
    dsn: str, table: str, columns: Sequence[str], count: int, make: Callable[[int], Row]
) -> float:
    """Inserts ``count`` users; returns the seconds it took."""
    begin = time.monotonic()
    asyncio.run(_copy(dsn, table, columns, count, make))
    return round(time.monotonic() - begin, 2)


async def _set_hash(dsn: str, statement: str, password_hash: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(statement, password_hash)
    finally:
        await conn.close()


def set_fastapi_users_hash(dsn: str, password_hash: str) -> None:
    """Gives every fastapi-users user another hash (switching the peer's hasher)."""
    asyncio.run(_set_hash(dsn, 'UPDATE "user" SET hashed_password = $1', password_hash))
