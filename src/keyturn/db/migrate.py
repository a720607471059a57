"""Applies the Alembic migrations programmatically (``keyturn migrate``, tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncConnection

from keyturn.db.engine import create_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    return config


async def upgrade(url: str, revision: str = "head") -> None:
    """Upgrades the database at ``url`` to ``revision`` in one transaction."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_sync, url, revision)
    finally:
        await engine.dispose()


def _upgrade_sync(connection: object, url: str, revision: str) -> None:
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def upgrade_blocking(url: str, revision: str = "head") -> None:
    asyncio.run(upgrade(url, revision))


async def current_revision(connection: AsyncConnection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    def _read(sync_conn: object) -> str | None:
        return MigrationContext.configure(sync_conn).get_current_revision()  # type: ignore[arg-type]

    return await connection.run_sync(_read)


async def is_current(url: str) -> bool:
    """Whether the database at ``url`` is at the newest migration."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await current_revision(connection) == head
    finally:
        await engine.dispose()
