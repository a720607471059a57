"""The client cache's rules (services/oauth2/client_cache.py) over both change feeds.

With the in-process feed: hits, eviction on a change, expiry, the size bound, no negative
caching, a fill racing a change, and a publisher that cannot publish. With a private
``redis-server`` (never the shared one) that is killed mid-way: the cache is cleared and
bypassed at once, and trusted again only after SUBSCRIBE is confirmed on the new server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from keyturn.domain import OAuthClient, utcnow
from keyturn.errors import StoreUnavailable
from keyturn.infra.invalidation import (
    MemoryChangeFeed,
    RedisChangeFeed,
    build_change_feed,
)
from keyturn.infra.redis_client import create_redis_client
from keyturn.services import change_cache
from keyturn.services.oauth2 import client_cache
from keyturn.services.oauth2.client_cache import ClientCache
from redis_server import RedisServer
from unit.infra.conftest import FakeClock, FakeUnitOfWork

pytestmark = pytest.mark.anyio

# Bounded polling (never a wall-clock assertion): 10 ms steps, 10 s at most.
POLLS = 1000


def _client(client_id: str, scope: str = "me:read") -> OAuthClient:
    now = utcnow()
    return OAuthClient(
        id=uuid.uuid4(),
        client_id=client_id,
        client_name="Cache",
        redirect_uris=(),
        post_logout_redirect_uris=(),
        grant_types=("client_credentials",),
        response_types=(),
        scope=scope,
        token_endpoint_auth_method="client_secret_basic",
        allowed_cors_origins=(),
        require_pkce=True,
        id_token_signed_response_alg="RS256",
        client_uri=None,
        policy_uri=None,
        tos_uri=None,
        created_at=now,
        updated_at=now,
        secret_rotated_at=None,
    )


class FakeClients:
    """``uow.clients.find`` over a dict; counts reads; can run a hook mid-read."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[OAuthClient, str | None]] = {}
        self.reads = 0
        self.during_read: Callable[[], None] | None = None

    async def find(self, client_id: str) -> tuple[OAuthClient, str | None] | None:
        self.reads += 1
        found = self.rows.get(client_id)
        if self.during_read is not None:
            self.during_read()
        return found


@pytest.fixture
def store() -> FakeClients:
    store = FakeClients()
    store.rows["a" * 22] = (_client("a" * 22), "digest-1")
    return store


def _cache(feed: Any, store: FakeClients, clock: FakeClock, **kwargs: Any) -> ClientCache:
    return ClientCache(
        changes=feed,
        read_uow_factory=lambda: FakeUnitOfWork(clients=store),  # type: ignore[arg-type,return-value]
        clock=clock,
        **kwargs,
    )


ID = "a" * 22


async def test_a_warm_entry_is_served_without_a_read(store: FakeClients, clock: FakeClock) -> None:
    cache = _cache(MemoryChangeFeed(), store, clock)
    assert (await cache.find(ID)) == store.rows[ID]
    assert (await cache.find(ID)) == store.rows[ID]
    assert store.reads == 1


async def test_a_published_change_is_forgotten_by_every_cache_of_the_process(
    store: FakeClients, clock: FakeClock
) -> None:
    feed, other_feed = MemoryChangeFeed(), MemoryChangeFeed()
    cache, other = _cache(feed, store, clock), _cache(other_feed, store, clock)
    try:
        await cache.find(ID)
        await other.find(ID)
        store.rows[ID] = (_client(ID), "digest-2")
        await cache.publish_change(ID)
        assert (await other.find(ID)) == (store.rows[ID][0], "digest-2")
        assert (await cache.find(ID))[1] == "digest-2"  # type: ignore[index]
        assert store.reads == 4
    finally:
        await feed.close()
        await other_feed.close()


async def test_entries_expire_after_the_maximum_age(store: FakeClients, clock: FakeClock) -> None:
    cache = _cache(MemoryChangeFeed(), store, clock)
    assert client_cache.MAX_AGE_SECONDS == 5.0
    await cache.find(ID)
    clock.advance(4.9)
    await cache.find(ID)
    assert store.reads == 1
    clock.advance(0.1)
    await cache.find(ID)
    assert store.reads == 2


async def test_the_cache_is_bounded_least_recently_used_first_out(
    store: FakeClients, clock: FakeClock
) -> None:
    ids = [f"{n:022d}" for n in range(4)]
    for client_id in ids:
        store.rows[client_id] = (_client(client_id), "d")
    cache = _cache(MemoryChangeFeed(), store, clock, max_entries=3)
    for client_id in ids[:3]:
        await cache.find(client_id)
    await cache.find(ids[0])  # used again: the oldest is now ids[1]
    await cache.find(ids[3])
    assert len(cache) == 3
    reads = store.reads
    await cache.find(ids[0])
    await cache.find(ids[3])
    assert store.reads == reads
    await cache.find(ids[1])
    assert store.reads == reads + 1


async def test_unknown_clients_are_never_cached(store: FakeClients, clock: FakeClock) -> None:
    cache = _cache(MemoryChangeFeed(), store, clock)
    missing = "b" * 22
    assert await cache.find(missing) is None
    # Created elsewhere: found at once, no invalidation needed.
    store.rows[missing] = (_client(missing), "d")
    assert await cache.find(missing) is not None


async def test_a_fill_that_heard_a_change_during_its_read_is_not_stored(
    store: FakeClients, clock: FakeClock
) -> None:
    cache = _cache(MemoryChangeFeed(), store, clock)
    # The read returns the old row; the change arrives before the read completes.
    store.during_read = lambda: cache.changed(ID)
    await cache.find(ID)
    store.during_read = None
    await cache.find(ID)
    assert store.reads == 2


async def test_a_lost_feed_clears_and_bypasses_until_live_again(
    store: FakeClients, clock: FakeClock
) -> None:
    cache = _cache(MemoryChangeFeed(), store, clock)
    await cache.find(ID)
    cache.lost()
    assert len(cache) == 0
    await cache.find(ID)
    await cache.find(ID)
    assert store.reads == 3  # bypassed: every call reads, nothing is stored
    assert len(cache) == 0
    cache.live()
    await cache.find(ID)
    await cache.find(ID)
    assert store.reads == 4


class FailingFeed:
    def __init__(self) -> None:
        self.listener: Any = None

    def attach(self, listener: Any) -> None:
        self.listener = listener
        listener.live()

    async def publish(self, client_id: str) -> None:
        raise StoreUnavailable("redis publish failed")


async def test_a_change_that_cannot_be_published_answers_after_the_maximum_age(
    store: FakeClients, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(change_cache.asyncio, "sleep", sleep)
    cache = _cache(FailingFeed(), store, clock)
    await cache.find(ID)
    await cache.publish_change(ID)
    # Every other process's entry has expired by the time the writer answers.
    assert slept == [client_cache.MAX_AGE_SECONDS]
    assert len(cache) == 0


# -- Redis: a private server, stopped and started under the feed ---------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def feeds(private_redis: RedisServer) -> AsyncIterator[tuple[Any, Any]]:
    prefix = f"kt-{uuid.uuid4().hex}:"
    first = build_change_feed(private_redis.url, prefix=prefix)
    second = build_change_feed(private_redis.url, prefix=prefix)
    assert isinstance(first, RedisChangeFeed)
    assert isinstance(second, RedisChangeFeed)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def _until(condition: Callable[[], bool]) -> bool:
    for _ in range(POLLS):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return False


async def test_redis_changes_reach_the_other_process_and_a_dead_redis_fails_closed(
    feeds: tuple[RedisChangeFeed, RedisChangeFeed],
    private_redis: RedisServer,
    store: FakeClients,
    clock: FakeClock,
) -> None:
    publisher, subscriber = feeds
    cache = _cache(subscriber, store, clock)
    writer = _cache(publisher, store, clock)
    assert not cache.is_live  # bypassed until SUBSCRIBE is confirmed
    await subscriber.start()
    await publisher.start()
    assert await _until(lambda: cache.is_live and writer.is_live)

    await cache.find(ID)
    assert len(cache) == 1
    await writer.publish_change(ID)
    assert await _until(lambda: len(cache) == 0)

    await cache.find(ID)
    assert len(cache) == 1
    private_redis.stop()
    # The connection drops: everything is forgotten and nothing is trusted.
    assert await _until(lambda: not cache.is_live)
    assert len(cache) == 0
    reads = store.reads
    await cache.find(ID)
    await cache.find(ID)
    assert store.reads == reads + 2
    assert len(cache) == 0

    private_redis.start()  # same port, empty: SUBSCRIBE again before any trust
    assert await _until(lambda: cache.is_live)
    await cache.find(ID)
    await cache.find(ID)
    assert store.reads == reads + 3
    await writer.publish_change(ID)
    assert await _until(lambda: len(cache) == 0)


async def test_close_ends_the_subscription_whenever_it_comes(private_redis: RedisServer) -> None:
    """A cancel could get lost inside redis-py's read, and the feed then listened on and
    held the app's shutdown (two CI runs). Closed at 200 points of its 10 ms heartbeat,
    it must stop every time; the bound only turns a hang into a failure."""
    for step in range(200):
        feed = RedisChangeFeed(
            create_redis_client(private_redis.url),
            subscriber=create_redis_client(private_redis.url, retries=0),
            prefix=f"kt-close-{step}:",
            owns_client=True,
            heartbeat=0.01,
        )
        await feed.start()
        # start() waits 2 s at most for SUBSCRIBE (a slow Redis must not hold up a
        # process's start); on a loaded CI worker it once took longer. Live first, then
        # close at the step's point.
        assert await _until(lambda started=feed: started.is_live)
        await asyncio.sleep((step % 20) / 1000)
        closing = asyncio.ensure_future(feed.close())
        done, _ = await asyncio.wait({closing}, timeout=10)
        while not closing.done():  # failing: keep cancelling so the suite itself ends
            if feed._task is not None:
                feed._task.cancel()
            await asyncio.sleep(0.01)
        assert done, f"close() at {step % 20} ms did not end the subscription"
        assert not feed.is_live
