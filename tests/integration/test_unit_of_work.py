"""The unit of work leaves nothing behind that it did not commit (both backends).

Its exit only closes the session: the pool rolls back on taking the connection back. These
tests hold that to what callers rely on: the rows are gone, and the locks with them, so
the next writer on the same pool goes straight through.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from keyturn.db.engine import create_engine, read_session_factory, session_factory
from keyturn.db.unit_of_work import SqlUnitOfWork
from keyturn.domain import User, utcnow

pytestmark = pytest.mark.anyio


@pytest.fixture
async def engine(private_database_url: str) -> AsyncIterator[AsyncEngine]:
    # One connection: a lock or transaction left on it would stall or leak into the next use.
    created = create_engine(private_database_url, pool_size=1)
    try:
        yield created
    finally:
        await created.dispose()


def _user() -> User:
    now = utcnow()
    return User(
        id=uuid.uuid4(),
        email=f"{uuid.uuid4().hex}@example.com",
        email_verified=False,
        name=None,
        password_hash=None,
        created_at=now,
    )


def _uow(engine: AsyncEngine, *, read_only: bool = False) -> SqlUnitOfWork:
    return SqlUnitOfWork(session_factory(engine), read_session_factory(engine), read_only=read_only)


async def test_what_was_not_committed_is_gone_and_holds_no_lock(engine: AsyncEngine) -> None:
    dropped, failed, kept = _user(), _user(), _user()
    async with _uow(engine) as uow:
        assert await uow.users.add(dropped)  # left without commit

    async def fail_after_writes() -> None:
        async with _uow(engine) as uow:
            assert await uow.users.add(failed)
            await uow.users.update_name(failed.id, "half", utcnow())
            raise LookupError("the use case failed after its writes")

    with pytest.raises(LookupError):
        await fail_after_writes()
    # The same single connection again: a write lock or an open transaction left on it
    # would make this writer wait or see the rows above.
    async with _uow(engine) as uow:
        assert await uow.users.add(kept)
        await uow.commit()
    async with _uow(engine, read_only=True) as uow:
        assert await uow.users.get(dropped.id) is None
        assert await uow.users.get_by_email(failed.email) is None
        found = await uow.users.get(kept.id)
    assert found is not None
    assert (found.email, found.roles) == (kept.email, ())


async def test_committed_user_changes_are_announced_once_the_connection_is_back(
    engine: AsyncEngine,
) -> None:
    """The user cache's announcement may wait out its expiry (Redis down): it runs after
    the exit has returned the one connection to the pool, and only for what committed."""
    announced: list[frozenset[uuid.UUID] | None] = []
    renamed, dropped = _user(), _user()

    async def announce(changed: frozenset[uuid.UUID] | None) -> None:
        # Needs the pool's only connection: it is free, or this would wait for ever.
        async with _uow(engine, read_only=True) as reader:
            assert await reader.users.get(renamed.id) is not None
        announced.append(changed)

    def writer() -> SqlUnitOfWork:
        return SqlUnitOfWork(
            session_factory(engine), read_session_factory(engine), users_changed=announce
        )

    async with writer() as uow:
        assert await uow.users.add(renamed)
        assert await uow.users.add(dropped)
        await uow.commit()
        await uow.users.update_name(renamed.id, "committed", utcnow())
        await uow.commit()
        await uow.users.update_name(dropped.id, "rolled back", utcnow())  # never committed
        assert announced == []  # nothing before the exit
    assert announced == [frozenset({renamed.id})]

    async def fail_after_commit() -> None:
        async with writer() as uow:
            await uow.roles.delete("no-such-role")  # a role's change: every user
            await uow.commit()
            raise LookupError("the use case failed after its commit")

    with pytest.raises(LookupError):
        await fail_after_commit()
    assert announced[1:] == [None]  # committed, so announced even though the block failed
