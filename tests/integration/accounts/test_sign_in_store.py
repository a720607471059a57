"""The login's own storage (``db/sign_in.py``): the lookup before the hash and the write
after it, each outside any unit of work, on both backends (issue 18)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from conftest import SettingsFactory
from helpers import running_app, signup_login
from keyturn.config import Settings
from keyturn.db import sign_in as sign_in_module
from keyturn.db.engine import create_engine
from keyturn.db.models import AuditEventRow, RefreshTokenRow, SessionRow
from keyturn.db.sign_in import SqlSignInStore
from keyturn.domain import AuditRecord, RefreshToken, Session, User, utcnow
from keyturn.domain_mfa import MfaStatus
from keyturn.errors import DatabaseUnavailable
from mfa_helpers import enrolled_account

pytestmark = pytest.mark.anyio


@pytest.fixture
async def accounts(make_settings: SettingsFactory) -> tuple[Settings, str, str]:
    """A plain account and one with TOTP (and its ten recovery codes): their emails."""
    settings = make_settings()
    async with running_app(settings) as http:
        email = (await signup_login(http))["email"]
        with_totp, _, _ = await enrolled_account(http)
    return settings, email, with_totp


@pytest.fixture
async def store_and_user(
    accounts: tuple[Settings, str, str],
) -> AsyncIterator[tuple[SqlSignInStore, AsyncEngine, User]]:
    settings, email, _ = accounts
    engine = create_engine(settings.database_url)
    try:
        store = SqlSignInStore(engine)
        found = await store.read(email)
        assert found is not None
        yield store, engine, found[0]
    finally:
        await engine.dispose()


def _sign_in(user: User) -> tuple[Session, tuple[RefreshToken, str], AuditRecord]:
    now = utcnow()
    session = Session(
        id=uuid.uuid4(),
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(days=1),
        auth_time=now,
        amr=("pwd",),
        ip="192.0.2.7",
        user_agent="test",
    )
    token = RefreshToken(
        id=uuid.uuid4(),
        session_id=session.id,
        parent_id=None,
        generation=1,
        created_at=now,
        rotated_at=None,
    )
    event = AuditRecord("login.succeeded", now, user.id, session.id, "192.0.2.7", {"x": "y"})
    return session, (token, "digest-" + uuid.uuid4().hex), event


async def _rows(engine: AsyncEngine, session_id: uuid.UUID) -> tuple[int, int, int]:
    async with engine.connect() as connection:
        counts = []
        for table, column in (
            (SessionRow, SessionRow.id),
            (RefreshTokenRow, RefreshTokenRow.session_id),
            (AuditEventRow, AuditEventRow.session_id),
        ):
            query = select(func.count()).select_from(table).where(column == session_id)
            counts.append(int((await connection.execute(query)).scalar_one()))
    return counts[0], counts[1], counts[2]


async def test_the_lookup_names_the_user_its_roles_and_factors(
    accounts: tuple[Settings, str, str],
    store_and_user: tuple[SqlSignInStore, AsyncEngine, User],
) -> None:
    _, email, with_totp = accounts
    store, _, user = store_and_user
    assert user.email == email
    assert user.password_hash is not None
    assert user.password_hash.startswith("$argon2id$")
    assert user.roles == ()
    found = await store.read(email)
    assert found is not None
    assert found[1] == MfaStatus(totp=False, passkeys=0, recovery_codes_left=0)
    found = await store.read(with_totp)
    assert found is not None
    assert found[0].email == with_totp
    assert found[1] == MfaStatus(totp=True, passkeys=0, recovery_codes_left=10)
    assert await store.read("nobody-" + email) is None


async def test_the_write_opens_the_session_with_its_token_and_audit_row(
    store_and_user: tuple[SqlSignInStore, AsyncEngine, User],
) -> None:
    store, engine, user = store_and_user
    session, token, event = _sign_in(user)
    assert await store.open(session, token, event, epoch=user.session_epoch)
    assert await _rows(engine, session.id) == (1, 1, 1)
    # Without a refresh token (a hosted page's sign-in): the session and its audit row.
    session, _, event = _sign_in(user)
    assert await store.open(session, None, event, epoch=user.session_epoch)
    assert await _rows(engine, session.id) == (1, 0, 1)


async def test_a_stale_epoch_writes_nothing(
    store_and_user: tuple[SqlSignInStore, AsyncEngine, User],
) -> None:
    store, engine, user = store_and_user
    session, token, event = _sign_in(user)
    assert not await store.open(session, token, event, epoch=user.session_epoch + 1)
    assert await _rows(engine, session.id) == (0, 0, 0)


def _dead_connection() -> DBAPIError:
    return DBAPIError("SELECT", {}, ConnectionResetError("gone"), connection_invalidated=True)


async def test_the_lookup_starts_over_once_on_a_dead_connection(
    store_and_user: tuple[SqlSignInStore, AsyncEngine, User],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, _, user = store_and_user
    real = sign_in_module.read_for_sign_in
    calls: list[int] = []

    async def dies_first(db: Any, email: str) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise _dead_connection()
        return await real(db, email)

    monkeypatch.setattr(sign_in_module, "read_for_sign_in", dies_first)
    found = await store.read(user.email)
    assert found is not None
    assert found[0].id == user.id
    assert len(calls) == 2


async def test_an_outage_is_unavailable_and_a_write_is_never_sent_twice(
    store_and_user: tuple[SqlSignInStore, AsyncEngine, User],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, _, user = store_and_user
    reads: list[int] = []
    writes: list[int] = []

    async def always_dead_read(db: Any, email: str) -> Any:
        reads.append(1)
        raise _dead_connection()

    async def dead_write(*args: Any, **kwargs: Any) -> bool:
        writes.append(1)
        raise _dead_connection()

    monkeypatch.setattr(sign_in_module, "read_for_sign_in", always_dead_read)
    monkeypatch.setattr(sign_in_module, "write_signed_in", dead_write)
    with pytest.raises(DatabaseUnavailable):
        await store.read(user.email)
    assert len(reads) == 2  # once more, then the outage
    session, token, event = _sign_in(user)
    with pytest.raises(DatabaseUnavailable):
        await store.open(session, token, event, epoch=user.session_epoch)
    # It may have committed before its answer was lost: never sent again.
    assert len(writes) == 1


async def test_an_error_that_is_no_outage_passes_unchanged(
    store_and_user: tuple[SqlSignInStore, AsyncEngine, User],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, _, user = store_and_user

    async def broken(db: Any, email: str) -> Any:
        raise DBAPIError("SELECT", {}, ValueError("a bug"), connection_invalidated=False)

    monkeypatch.setattr(sign_in_module, "read_for_sign_in", broken)
    with pytest.raises(DBAPIError):
        await store.read(user.email)
