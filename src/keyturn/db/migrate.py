"""Applies the Alembic migrations programmatically (``keyturn migrate``, tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True, slots=True)
class Upgrade:
    """What one upgrade did: the revision before and after, and each one applied in order."""

    before: str | None
    after: str | None
    applied: tuple[str, ...]

    def summary(self) -> str:
        """``applied 0001..0013`` / ``applied 0013`` / ``already at 0013`` for an operator."""
        if not self.applied:
            return f"already at {self.after or 'an empty schema'}"
        if len(self.applied) == 1:
            return f"applied {self.applied[0]}"
        return f"applied {self.applied[0]}..{self.applied[-1]}"


async def upgrade(url: str, revision: str = "head", *, statement_cache: bool = True) -> Upgrade:
    """Upgrades the database at ``url`` to ``revision`` in one transaction.

    ``statement_cache=False`` behind a transaction-mode pooler (see ``create_engine``).
    """
    engine = create_engine(url, statement_cache=statement_cache)
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(_upgrade_sync, url, revision)
    finally:
        await engine.dispose()


def _upgrade_sync(connection: Any, url: str, revision: str) -> Upgrade:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = alembic_config(url)
    config.attributes["connection"] = connection
    before = MigrationContext.configure(connection).get_current_revision()
    command.upgrade(config, revision)
    after = MigrationContext.configure(connection).get_current_revision()
    applied: tuple[str, ...] = ()
    if after != before and after is not None:
        steps = ScriptDirectory.from_config(config).iterate_revisions(after, before or "base")
        applied = tuple(step.revision for step in reversed(list(steps)))
    return Upgrade(before=before, after=after, applied=applied)


async def current_revision(connection: AsyncConnection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    def _read(sync_conn: object) -> str | None:
        return MigrationContext.configure(sync_conn).get_current_revision()  # type: ignore[arg-type]

    return await connection.run_sync(_read)


async def is_current(url: str, *, statement_cache: bool = True) -> bool:
    """Whether the database at ``url`` is at the newest migration."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = create_engine(url, statement_cache=statement_cache)
    try:
        async with engine.connect() as connection:
            return await current_revision(connection) == head
    finally:
        await engine.dispose()
