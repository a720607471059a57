"""A password login's two statements, each on a pooled connection of its own (issue 18).

A login reads the user (with roles and second factors) before the hash and, after it,
opens the session with its first refresh token and the audit row. Neither needs a unit of
work: each is one statement (on SQLite the write is three inserts in one local
transaction), and on PostgreSQL each runs on an autocommit connection, so the write is its
own transaction. Without an ORM session around them the event loop spends about 100 us
less per statement; while logins saturate the hash pool, that loop shares the cores with
the hashes and runs cache-cold beside them, so each of those microseconds counts about
twice. The SQL is the repositories' (``db/users.py`` ``read_for_sign_in``,
``db/session_opening.py`` ``write_signed_in``); a hash upgrade writes in the ordinary unit of
work (``SqlSessionRepository.open_signed_in``), in one transaction with the new hash.

As the unit of work does, a database outage becomes ``DatabaseUnavailable`` (503) and the
read is sent again once when its pooled connection turns out dead; the write never is (it
may have committed before the answer was lost).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from keyturn.db.engine import is_sqlite
from keyturn.db.outage import is_outage, unavailable
from keyturn.db.session_opening import write_signed_in
from keyturn.db.users import read_for_sign_in
from keyturn.domain import AuditRecord, RefreshToken, Session, User
from keyturn.domain_mfa import MfaStatus


@contextmanager
def _outage_as_unavailable() -> Iterator[None]:
    try:
        yield
    except Exception as error:
        if is_outage(error):
            raise unavailable(error) from error
        raise


class SqlSignInStore:
    """Meets ``services.accounts.ports.SignInStore``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgresql = not is_sqlite(engine)
        # SQLite: the engine's own transactions (BEGIN IMMEDIATE, local, no round trip).
        self._autocommit = (
            engine.execution_options(isolation_level="AUTOCOMMIT") if self._postgresql else engine
        )

    async def read(self, email: str) -> tuple[User, MfaStatus] | None:
        with _outage_as_unavailable():
            try:
                return await self._read(email)
            except DBAPIError as error:
                if not error.connection_invalidated:
                    raise
                # The pooled connection was dead: a read loses nothing by starting over.
                return await self._read(email)

    async def _read(self, email: str) -> tuple[User, MfaStatus] | None:
        async with self._autocommit.connect() as connection:
            return await read_for_sign_in(connection, email)

    async def open(
        self,
        session: Session,
        token: tuple[RefreshToken, str] | None,
        event: AuditRecord,
        *,
        epoch: int,
    ) -> bool:
        with _outage_as_unavailable():
            if self._postgresql:
                async with self._autocommit.connect() as connection:
                    return await write_signed_in(
                        connection, session, token, event, epoch, postgresql=True
                    )
            async with self._engine.begin() as connection:
                return await write_signed_in(
                    connection, session, token, event, epoch, postgresql=False
                )
