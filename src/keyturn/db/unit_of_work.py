"""The SQL unit of work: one AsyncSession, one commit per use case.

A unit of work built with ``read_only=True`` (the composition root hands services a second
factory of them for their pure reads) runs, on PostgreSQL, on an autocommit session: each
SELECT is one round trip (no BEGIN / ROLLBACK) and any write is refused. On SQLite nothing
changes.

Leaving the unit of work turns a database outage (connection refused, lost, timed out; see
``db/outage.py``) into ``DatabaseUnavailable`` (503, ``Retry-After``); any other error
passes unchanged.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from keyturn.db.api_keys import SqlApiKeyRepository
from keyturn.db.audit import SqlAuditRepository
from keyturn.db.mfa import SqlMfaStatusReader, SqlRecoveryCodeRepository, SqlTotpRepository
from keyturn.db.oauth_clients import SqlOAuthClientRepository
from keyturn.db.oauth_grants import SqlAuthorizationCodeRepository, SqlConsentRepository
from keyturn.db.one_time_tokens import SqlOneTimeTokenRepository
from keyturn.db.outage import is_outage, unavailable
from keyturn.db.outbox import SqlOutboxRepository
from keyturn.db.passkeys import SqlPasskeyRepository
from keyturn.db.refresh_tokens import SqlRefreshTokenRepository
from keyturn.db.roles import SqlRoleRepository
from keyturn.db.sessions import SqlSessionRepository
from keyturn.db.signing_keys import SqlSigningKeyRepository
from keyturn.db.user_changes import UserChanges, UsersChanged
from keyturn.db.users import SqlUserRepository


class SqlUnitOfWork:
    """Opens a session on enter; what ``commit`` did not commit is rolled back on exit."""

    users: SqlUserRepository
    sessions: SqlSessionRepository
    refresh_tokens: SqlRefreshTokenRepository
    signing_keys: SqlSigningKeyRepository
    audit: SqlAuditRepository
    one_time_tokens: SqlOneTimeTokenRepository
    outbox: SqlOutboxRepository
    roles: SqlRoleRepository
    api_keys: SqlApiKeyRepository
    clients: SqlOAuthClientRepository
    authorization_codes: SqlAuthorizationCodeRepository
    consents: SqlConsentRepository
    totp: SqlTotpRepository
    recovery_codes: SqlRecoveryCodeRepository
    passkeys: SqlPasskeyRepository
    mfa: SqlMfaStatusReader

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        read_sessions: async_sessionmaker[AsyncSession] | None = None,
        *,
        read_only: bool = False,
        users_changed: UsersChanged | None = None,
    ) -> None:
        self._sessions = sessions
        self._read_sessions = read_sessions
        self._read_only = read_only
        self._users_changed = users_changed
        self._changes = UserChanges()
        self._db: AsyncSession | None = None

    async def __aenter__(self) -> Self:
        if self._read_sessions is not None and self._read_only:
            db = self._read_sessions()
        else:
            db = self._sessions()
        self._db = db
        self.users = SqlUserRepository(db, self._changes)
        self.sessions = SqlSessionRepository(db, self._changes)
        self.refresh_tokens = SqlRefreshTokenRepository(db)
        self.signing_keys = SqlSigningKeyRepository(db)
        self.audit = SqlAuditRepository(db)
        self.one_time_tokens = SqlOneTimeTokenRepository(db)
        self.outbox = SqlOutboxRepository(db)
        self.roles = SqlRoleRepository(db, self._changes)
        self.api_keys = SqlApiKeyRepository(db)
        self.clients = SqlOAuthClientRepository(db)
        self.authorization_codes = SqlAuthorizationCodeRepository(db)
        self.consents = SqlConsentRepository(db)
        self.totp = SqlTotpRepository(db)
        self.recovery_codes = SqlRecoveryCodeRepository(db)
        self.passkeys = SqlPasskeyRepository(db)
        self.mfa = SqlMfaStatusReader(db)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._close(exc)
        finally:
            # Committed changes of users are announced once the connection is back in the
            # pool: with Redis down the announcement waits out the user cache's expiry.
            changed = self._changes.take()
            if self._users_changed is not None and changed != frozenset():
                await self._users_changed(changed)

    async def _close(self, exc: BaseException | None) -> None:
        assert self._db is not None  # noqa: S101  (entered before exit, by construction)
        db, self._db = self._db, None
        try:
            # close() alone: the pool rolls back what was not committed when it takes the
            # connection back (reset on return). A rollback() first cost one more pass
            # through the session, about 50 us of every unit of work (issue 18).
            await db.close()
        except Exception as cleanup:
            # On a lost connection the cleanup fails too (SQLAlchemy has already invalidated
            # the connection; the pool replaces it). The block's own error is the story.
            if not is_outage(cleanup):
                raise
            if exc is not None and not is_outage(exc):
                return  # the block's error propagates unchanged
            first = exc or cleanup
            raise unavailable(first) from first
        if exc is not None and is_outage(exc):
            # A database outage is no bug in the request: the edge answers 503 with
            # Retry-After instead of 500, and the services never see SQLAlchemy.
            raise unavailable(exc) from exc

    async def commit(self) -> None:
        assert self._db is not None  # noqa: S101  (only called inside the context)
        await self._db.commit()
        self._changes.committed()
