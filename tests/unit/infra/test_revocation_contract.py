"""One contract suite for every ``RevocationStore`` (litestar tests/unit/test_stores.py style).

The ``backend`` fixture yields each implementation in turn; the Redis one is skipped
unless ``KEYTURN_TEST_REDIS_URL`` is set. Tests that only make sense for one backend
(the cross-replica property, the in-process purge bound) follow the contract.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from keyturn.errors import StoreUnavailable
from keyturn.infra.revocation import (
    MemoryRevocationStore,
    RedisRevocationStore,
    build_revocation_store,
)
from keyturn.services.accounts import RevocationStore

if TYPE_CHECKING:
    from unit.infra.conftest import FakeClock, RedisProbe

pytestmark = pytest.mark.anyio


@dataclass
class Backend:
    """A store under test plus the backend-specific way to let a TTL run out."""

    store: RevocationStore
    let_ttl_pass: Callable[[str, int], Awaitable[None]]


def new_sid() -> str:
    return str(uuid.uuid4())


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def backend(
    request: pytest.FixtureRequest, clock: FakeClock, redis_probe: RedisProbe | None
) -> AsyncIterator[Backend]:
    if request.param == "memory":

        async def advance_clock(sid: str, ttl_seconds: int) -> None:
            clock.advance(ttl_seconds)

        memory = MemoryRevocationStore(clock=clock)
        yield Backend(memory, advance_clock)
        await memory.close()
        return

    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    store = RedisRevocationStore.from_url(url, prefix=prefix)
    await store.seal()
    assert redis_probe is not None  # redis_url skipped the test otherwise
    raw, wait_key_gone = redis_probe.client, redis_probe.wait_gone

    async def expire_key(sid: str, ttl_seconds: int) -> None:
        key = store.key(sid)
        # The TTL Redis holds is the one asked for: no sleeping through it.
        remaining_ms = await raw.pttl(key)
        assert 0 < remaining_ms <= ttl_seconds * 1000
        # Then cut it to 1 ms and poll, bounded, instead of asserting on wall time.
        await raw.pexpire(key, 1)
        await wait_key_gone(key, 200)

    yield Backend(store, expire_key)
    await store.close()


# --- the contract ------------------------------------------------------------------


async def test_unknown_sid_is_not_revoked(backend: Backend) -> None:
    assert await backend.store.is_revoked(new_sid()) is False


async def test_revoked_sid_is_revoked_and_others_are_not(backend: Backend) -> None:
    sid, other = new_sid(), new_sid()
    await backend.store.revoke(sid, 600)
    assert await backend.store.is_revoked(sid) is True
    assert await backend.store.is_revoked(other) is False


async def test_revoking_twice_is_harmless(backend: Backend) -> None:
    sid = new_sid()
    await backend.store.revoke(sid, 600)
    await backend.store.revoke(sid, 600)
    assert await backend.store.is_revoked(sid) is True


async def test_revocation_ends_when_its_ttl_runs_out(backend: Backend) -> None:
    sid = new_sid()
    await backend.store.revoke(sid, 1)
    assert await backend.store.is_revoked(sid) is True
    await backend.let_ttl_pass(sid, 1)
    assert await backend.store.is_revoked(sid) is False


@pytest.mark.parametrize("ttl", [0, -5])
async def test_non_positive_ttl_is_refused(backend: Backend, ttl: int) -> None:
    sid = new_sid()
    with pytest.raises(ValueError, match="ttl_seconds"):
        await backend.store.revoke(sid, ttl)
    assert await backend.store.is_revoked(sid) is False


async def test_ping_answers(backend: Backend) -> None:
    await backend.store.ping()


async def test_revoked_among_answers_each_sid_in_one_call(backend: Backend) -> None:
    revoked, expiring, other = new_sid(), new_sid(), new_sid()
    await backend.store.revoke(revoked, 600)
    await backend.store.revoke(expiring, 1)
    asked = [revoked, expiring, other]
    assert await backend.store.revoked_among(asked) == {revoked, expiring}
    await backend.let_ttl_pass(expiring, 1)
    assert await backend.store.revoked_among(asked) == {revoked}
    assert await backend.store.revoked_among([other]) == frozenset()
    assert await backend.store.revoked_among([]) == frozenset()


# --- memory only: single process, bounded lazy purge --------------------------------


async def test_memory_entry_lives_exactly_its_ttl(clock: FakeClock) -> None:
    store = MemoryRevocationStore(clock=clock)
    sid = new_sid()
    await store.revoke(sid, 10)
    clock.advance(9.999)
    assert await store.is_revoked(sid) is True
    clock.advance(0.001)
    assert await store.is_revoked(sid) is False


async def test_memory_purge_is_bounded_per_call_and_drains(clock: FakeClock) -> None:
    store = MemoryRevocationStore(clock=clock)
    for _ in range(100):
        await store.revoke(new_sid(), 1)
    clock.advance(2)
    await store.is_revoked(new_sid())
    assert len(store) == 100 - 32  # one call drops one batch, not the whole backlog
    for _ in range(3):
        await store.is_revoked(new_sid())
    assert len(store) == 0


async def test_memory_later_revoke_replaces_the_ttl(clock: FakeClock) -> None:
    store = MemoryRevocationStore(clock=clock)
    sid = new_sid()
    await store.revoke(sid, 1)
    await store.revoke(sid, 60)
    clock.advance(2)  # the first expiry passes; its stale heap entry must not evict sid
    assert await store.is_revoked(sid) is True
    clock.advance(60)
    assert await store.is_revoked(sid) is False


async def test_memory_close_forgets_everything() -> None:
    store = MemoryRevocationStore()
    await store.revoke(new_sid(), 60)
    await store.close()
    assert len(store) == 0


# --- Redis only: shared across replicas ---------------------------------------------


@pytest.mark.redis
async def test_redis_replicas_see_each_others_revocations(
    redis_url: str, redis_prefix: str
) -> None:
    replica_a = RedisRevocationStore.from_url(redis_url, prefix=redis_prefix)
    replica_b = RedisRevocationStore.from_url(redis_url, prefix=redis_prefix)
    other_deployment = RedisRevocationStore.from_url(redis_url, prefix=f"{redis_prefix}other:")
    try:
        await replica_a.seal()
        await other_deployment.seal()
        sid_a, sid_b = new_sid(), new_sid()
        await replica_a.revoke(sid_a, 600)
        await replica_b.revoke(sid_b, 600)
        assert await replica_b.is_revoked(sid_a) is True
        assert await replica_a.is_revoked(sid_b) is True
        # The prefix is the namespace: another deployment on the same Redis is unaffected.
        assert await other_deployment.is_revoked(sid_a) is False
    finally:
        for store in (replica_a, replica_b, other_deployment):
            await store.close()


@pytest.mark.redis
async def test_redis_key_layout_and_ttl(raw_redis: Redis, redis_prefix: str) -> None:
    store = RedisRevocationStore(raw_redis, prefix=redis_prefix)
    try:
        sid = new_sid()
        await store.revoke(sid, 600)
        key = f"{redis_prefix}revoked:sid:{sid}"
        assert store.key(sid) == key
        assert 0 < await raw_redis.ttl(key) <= 600
    finally:
        await store.close()
        # An injected client belongs to the caller: closing the store leaves it usable.
        assert await raw_redis.ping() is True


@pytest.mark.redis
async def test_build_revocation_store_with_url_shares_redis(
    redis_url: str, redis_prefix: str
) -> None:
    store = build_revocation_store(redis_url, prefix=redis_prefix)
    try:
        assert isinstance(store, RedisRevocationStore)
        await store.seal()
        sid = new_sid()
        await store.revoke(sid, 60)
        assert await store.is_revoked(sid) is True
    finally:
        await store.close()


# --- failures: need no running Redis ------------------------------------------------


def assert_unavailable(excinfo: pytest.ExceptionInfo[StoreUnavailable]) -> None:
    assert isinstance(excinfo.value.__cause__, RedisError | OSError)


async def test_unreachable_redis_raises_store_unavailable(dead_port: int) -> None:
    store = RedisRevocationStore.from_url(
        f"redis://127.0.0.1:{dead_port}/0", prefix="keyturn-test-dead:"
    )
    try:
        with pytest.raises(StoreUnavailable) as excinfo:
            await store.is_revoked(new_sid())
        assert_unavailable(excinfo)
        with pytest.raises(StoreUnavailable) as excinfo:
            await store.ping()
        assert_unavailable(excinfo)
        with pytest.raises(StoreUnavailable) as excinfo:
            await store.revoke(new_sid(), 60)
        assert_unavailable(excinfo)
        with pytest.raises(StoreUnavailable) as excinfo:
            await store.revoked_among([new_sid(), new_sid()])
        assert_unavailable(excinfo)
    finally:
        await store.close()


async def test_silent_redis_times_out_as_store_unavailable(silent_port: int) -> None:
    store = RedisRevocationStore.from_url(
        f"redis://127.0.0.1:{silent_port}/0",
        prefix="keyturn-test-silent:",
        socket_timeout=0.05,
        connect_timeout=0.05,
    )
    try:
        with pytest.raises(StoreUnavailable) as excinfo:
            await store.is_revoked(new_sid())
        assert_unavailable(excinfo)
    finally:
        await store.close()


async def test_build_revocation_store_without_url_is_in_process() -> None:
    assert isinstance(build_revocation_store(None, prefix="x:"), MemoryRevocationStore)
    assert isinstance(build_revocation_store("", prefix="x:"), MemoryRevocationStore)


async def test_build_revocation_store_with_url_does_not_connect_yet(dead_port: int) -> None:
    store = build_revocation_store(f"redis://127.0.0.1:{dead_port}/0", prefix="x:")
    assert isinstance(store, RedisRevocationStore)
    await store.close()


@pytest.mark.redis
async def test_unsealed_redis_list_cannot_vouch_for_a_session(
    redis_url: str, redis_prefix: str
) -> None:
    """After a Redis restart or flush the list is empty: "not listed" must not mean valid."""
    store = RedisRevocationStore.from_url(redis_url, prefix=redis_prefix)
    try:
        with pytest.raises(StoreUnavailable):
            await store.is_revoked(new_sid())
        with pytest.raises(StoreUnavailable):
            await store.revoked_among([new_sid()])
        await store.seal()
        assert await store.is_revoked(new_sid()) is False
        assert await store.revoked_among([new_sid()]) == frozenset()
    finally:
        await store.close()


async def test_memory_list_needs_no_seal() -> None:
    store = MemoryRevocationStore()
    await store.seal()
    assert await store.is_revoked(new_sid()) is False
