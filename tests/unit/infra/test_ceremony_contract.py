"""One contract suite for every ``CeremonyStore`` (memory and Redis).

The ``backend`` fixture yields each implementation in turn; the Redis one is skipped
unless ``KEYTURN_TEST_REDIS_URL`` is set. Backend-specific properties follow the contract.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from redis.asyncio import Redis

from keyturn.errors import StoreUnavailable
from keyturn.infra.ceremonies import (
    MemoryCeremonyStore,
    RedisCeremonyStore,
    build_ceremony_store,
)
from keyturn.services.mfa import CeremonyStore

if TYPE_CHECKING:
    from unit.infra.conftest import FakeClock, RedisProbe

pytestmark = pytest.mark.anyio


@dataclass
class Backend:
    store: CeremonyStore
    let_ttl_pass: Callable[[str, int], Awaitable[None]]


def new_key() -> str:
    return f"webauthn:{uuid.uuid4().hex}"


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def backend(
    request: pytest.FixtureRequest, clock: FakeClock, redis_probe: RedisProbe | None
) -> AsyncIterator[Backend]:
    if request.param == "memory":

        async def advance_clock(key: str, ttl_seconds: int) -> None:
            clock.advance(ttl_seconds)

        memory = MemoryCeremonyStore(clock=clock)
        yield Backend(memory, advance_clock)
        await memory.close()
        return

    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    store = RedisCeremonyStore.from_url(url, prefix=prefix)
    assert redis_probe is not None  # redis_url skipped the test otherwise
    raw, wait_key_gone = redis_probe.client, redis_probe.wait_gone

    async def expire_key(key: str, ttl_seconds: int) -> None:
        name = store.key(key)
        # The TTL Redis holds is the one asked for; then cut it short and poll (bounded).
        remaining_ms = await raw.pttl(name)
        assert 0 < remaining_ms <= ttl_seconds * 1000
        await raw.pexpire(name, 1)
        assert await wait_key_gone(name, 200)

    yield Backend(store, expire_key)
    await store.close()


# --- the contract ------------------------------------------------------------------


async def test_unknown_key_takes_nothing(backend: Backend) -> None:
    assert await backend.store.take(new_key()) is None


async def test_put_then_take_returns_the_value_once(backend: Backend) -> None:
    key, other = new_key(), new_key()
    await backend.store.put(key, b'{"purpose": "passwordless"}', ttl_seconds=300)
    await backend.store.put(other, b"other", ttl_seconds=300)
    assert await backend.store.take(key) == b'{"purpose": "passwordless"}'
    # Single use: the second take finds nothing, the other key is untouched.
    assert await backend.store.take(key) is None
    assert await backend.store.take(other) == b"other"


async def test_racing_takes_give_the_value_to_exactly_one(backend: Backend) -> None:
    key = new_key()
    await backend.store.put(key, b"v", ttl_seconds=300)
    results = await asyncio.gather(*(backend.store.take(key) for _ in range(8)))
    assert sorted(results, key=lambda r: r is None) == [b"v", *([None] * 7)]


async def test_a_later_put_replaces_the_value(backend: Backend) -> None:
    key = new_key()
    await backend.store.put(key, b"first", ttl_seconds=300)
    await backend.store.put(key, b"second", ttl_seconds=300)
    assert await backend.store.take(key) == b"second"


async def test_value_is_gone_when_its_ttl_runs_out(backend: Backend) -> None:
    key = new_key()
    await backend.store.put(key, b"v", ttl_seconds=300)
    await backend.let_ttl_pass(key, 300)
    assert await backend.store.take(key) is None


@pytest.mark.parametrize("ttl", [0, -5])
async def test_non_positive_ttl_is_refused(backend: Backend, ttl: int) -> None:
    key = new_key()
    with pytest.raises(ValueError, match="ttl_seconds"):
        await backend.store.put(key, b"v", ttl_seconds=ttl)
    assert await backend.store.take(key) is None


# --- memory only --------------------------------------------------------------------


async def test_memory_entry_lives_exactly_its_ttl(clock: FakeClock) -> None:
    store = MemoryCeremonyStore(clock=clock)
    first, second = new_key(), new_key()
    await store.put(first, b"v", ttl_seconds=10)
    await store.put(second, b"v", ttl_seconds=10)
    clock.advance(9.999)
    assert await store.take(first) == b"v"
    clock.advance(0.001)
    assert await store.take(second) is None


async def test_memory_purge_is_bounded_per_call_and_drains(clock: FakeClock) -> None:
    store = MemoryCeremonyStore(clock=clock)
    for _ in range(100):
        await store.put(new_key(), b"v", ttl_seconds=1)
    clock.advance(2)
    await store.take(new_key())
    assert len(store) == 100 - 32
    for _ in range(3):
        await store.take(new_key())
    assert len(store) == 0


async def test_memory_holds_at_most_max_entries_dropping_the_oldest(clock: FakeClock) -> None:
    store = MemoryCeremonyStore(clock=clock, max_entries=3)
    keys = [new_key() for _ in range(4)]
    for seconds, key in enumerate(keys, start=10):
        await store.put(key, key.encode(), ttl_seconds=seconds)
    assert len(store) == 3
    assert await store.take(keys[0]) is None  # the soonest to expire made room
    assert [await store.take(key) for key in keys[1:]] == [k.encode() for k in keys[1:]]


async def test_memory_close_forgets_everything() -> None:
    store = MemoryCeremonyStore()
    await store.put(new_key(), b"v", ttl_seconds=60)
    await store.ping()
    await store.close()
    assert len(store) == 0


def test_build_without_redis_is_the_memory_store() -> None:
    assert isinstance(build_ceremony_store(None, prefix="p:"), MemoryCeremonyStore)


# --- Redis only ----------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_replicas_share_ceremonies_under_their_prefix(
    redis_url: str, redis_prefix: str
) -> None:
    replica_a = build_ceremony_store(redis_url, prefix=redis_prefix)
    replica_b = build_ceremony_store(redis_url, prefix=redis_prefix)
    other_deployment = RedisCeremonyStore.from_url(redis_url, prefix=f"{redis_prefix}other:")
    try:
        assert isinstance(replica_a, RedisCeremonyStore)
        key = new_key()
        await replica_a.put(key, b"v", ttl_seconds=300)
        assert await other_deployment.take(key) is None
        assert await replica_b.take(key) == b"v"
        assert await replica_a.take(key) is None
    finally:
        for store in (replica_a, replica_b, other_deployment):
            await store.close()


@pytest.mark.redis
async def test_redis_key_layout_and_ttl(raw_redis: Redis, redis_prefix: str) -> None:
    store = RedisCeremonyStore(raw_redis, prefix=redis_prefix)
    key = new_key()
    await store.put(key, b"v", ttl_seconds=300)
    assert store.key(key) == f"{redis_prefix}ceremony:{key}"
    assert 0 < await raw_redis.ttl(store.key(key)) <= 300
    await store.close()
    assert await raw_redis.ping() is True


async def test_redis_down_is_store_unavailable(dead_port: int) -> None:
    store = RedisCeremonyStore.from_url(f"redis://127.0.0.1:{dead_port}/0", prefix="p:")
    try:
        with pytest.raises(StoreUnavailable):
            await store.put(new_key(), b"v", ttl_seconds=60)
        with pytest.raises(StoreUnavailable):
            await store.take(new_key())
    finally:
        await store.close()
