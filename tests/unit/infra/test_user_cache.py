"""The user cache (services/accounts/user_cache.py) over the in-process change feeds:
what it keeps, what a commit's marks make it forget, and that its channel is its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from keyturn.domain import User, utcnow
from keyturn.infra.invalidation import CLIENTS_CHANNEL, USERS_CHANNEL, MemoryChangeFeed
from keyturn.services.accounts import UserCache
from keyturn.services.change_cache import ChangeFedCache
from unit.infra.conftest import FakeUnitOfWork

pytestmark = pytest.mark.anyio


class FakeUsers:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, User] = {}
        self.reads = 0

    async def get(self, user_id: uuid.UUID) -> User | None:
        self.reads += 1
        return self.rows.get(user_id)


def _user(name: str) -> User:
    return User(
        id=uuid.uuid4(),
        email=f"{name}@example.com",
        email_verified=True,
        name=name,
        password_hash="$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
        created_at=utcnow(),
    )


@pytest.fixture
async def feeds() -> AsyncIterator[tuple[MemoryChangeFeed, MemoryChangeFeed]]:
    users, clients = MemoryChangeFeed(USERS_CHANNEL), MemoryChangeFeed(CLIENTS_CHANNEL)
    yield users, clients
    await users.close()
    await clients.close()


def _cache(feed: Any, store: FakeUsers) -> UserCache:
    return UserCache(
        changes=feed,
        read_uow_factory=lambda: FakeUnitOfWork(users=store),
    )


async def test_a_profile_is_kept_without_its_password_hash(
    feeds: tuple[MemoryChangeFeed, MemoryChangeFeed],
) -> None:
    store = FakeUsers()
    ada = _user("ada")
    store.rows[ada.id] = ada
    cache = _cache(feeds[0], store)
    first = await cache.profile(ada.id)
    second = await cache.profile(ada.id)
    assert first is not None
    assert first.password_hash is None
    assert second == first
    assert store.reads == 1
    assert await cache.profile(uuid.uuid4()) is None  # unknown: read each time, never kept
    assert len(cache) == 1


async def test_a_commits_marks_reach_every_cache_of_the_process(
    feeds: tuple[MemoryChangeFeed, MemoryChangeFeed],
) -> None:
    store = FakeUsers()
    ada, bob = _user("ada"), _user("bob")
    store.rows |= {ada.id: ada, bob.id: bob}
    other_feed = MemoryChangeFeed(USERS_CHANNEL)  # another app of this process
    one, other = _cache(feeds[0], store), _cache(other_feed, store)
    try:
        for cache in (one, other):
            await cache.profile(ada.id)
            await cache.profile(bob.id)
        await one.publish_users(frozenset({ada.id}))
        assert other.cached(str(ada.id)) is None
        assert other.cached(str(bob.id)) is not None
        await one.publish_users(None)  # every user (a role changed)
        assert len(one) == len(other) == 0
    finally:
        await other_feed.close()


async def test_the_users_channel_is_not_the_clients_channel(
    feeds: tuple[MemoryChangeFeed, MemoryChangeFeed],
) -> None:
    users_feed, clients_feed = feeds
    store = FakeUsers()
    ada = _user("ada")
    store.rows[ada.id] = ada
    cache = _cache(users_feed, store)
    await cache.profile(ada.id)
    heard: list[str] = []

    class Listener(ChangeFedCache[str]):
        def changed(self, key: str) -> None:
            heard.append(key)
            super().changed(key)

    Listener(changes=clients_feed, max_age=5.0, max_entries=8)
    await clients_feed.publish("*")  # every client: no user is forgotten
    assert cache.cached(str(ada.id)) is not None
    await cache.publish_users(frozenset({ada.id}))
    assert heard == ["*"]
