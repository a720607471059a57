"""One contract suite for every ``RateLimiter`` (litestar tests/unit/test_stores.py style).

The ``backend`` fixture yields each implementation in turn: memory, Redis, the fallback
wrapper over a live Redis, and the fallback wrapper over a dead Redis (which must still
limit, per process). The Redis ones are skipped unless ``KEYTURN_TEST_REDIS_URL`` is
set. Backend-specific properties (exact sliding on a fake clock, key eviction, the
cross-replica count, failure mapping) follow the contract.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from keyturn.domain import RateDecision
from keyturn.errors import StoreUnavailable
from keyturn.infra.rate_limit import MemoryRateLimiter, RedisRateLimiter
from keyturn.infra.rate_limit_fallback import FallbackRateLimiter, build_rate_limiter
from keyturn.services.accounts import RateLimiter

if TYPE_CHECKING:
    from unit.infra.conftest import FakeClock, RedisProbe

pytestmark = pytest.mark.anyio


@dataclass
class Backend:
    """A limiter under test plus the backend-specific way to let a window pass."""

    limiter: RateLimiter
    let_window_pass: Callable[[str, int], Awaitable[None]]
    fallbacks: list[str] = field(default_factory=list)
    store_down: bool = False


def new_key() -> str:
    return f"login:{uuid.uuid4()}"


BACKENDS = [
    "memory",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("fallback-redis", marks=pytest.mark.redis),
    "fallback-dead-redis",
]


@pytest.fixture(params=BACKENDS)
async def backend(
    request: pytest.FixtureRequest, clock: FakeClock, redis_probe: RedisProbe | None
) -> AsyncIterator[Backend]:
    async def advance_clock(key: str, window_seconds: int) -> None:
        clock.advance(window_seconds)

    if request.param in ("memory", "fallback-dead-redis"):
        memory = MemoryRateLimiter(clock=clock)
        if request.param == "memory":
            yield Backend(memory, advance_clock)
            await memory.close()
            return
        port: int = request.getfixturevalue("dead_port")
        dead = RedisRateLimiter.from_url(f"redis://127.0.0.1:{port}/0", prefix="keyturn-test-x:")
        backend = Backend(memory, advance_clock, store_down=True)
        backend.limiter = FallbackRateLimiter(dead, memory, on_fallback=backend.fallbacks.append)
        yield backend
        await backend.limiter.close()
        return

    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    redis_limiter = RedisRateLimiter.from_url(url, prefix=prefix)
    assert redis_probe is not None  # redis_url skipped the test otherwise
    raw, wait_key_gone = redis_probe.client, redis_probe.wait_gone

    async def wait_out_window(key: str, window_seconds: int) -> None:
        # The sliding log lives on the Redis clock: real time must pass. Tests use a 1 s
        # window; the key expires with its newest hit, so poll (bounded) for that.
        redis_key = redis_limiter.key(key)
        assert 0 < await raw.pttl(redis_key) <= window_seconds * 1000
        if not await wait_key_gone(redis_key, window_seconds * 100 + 200):
            pytest.fail(f"{redis_key} outlived its {window_seconds} s window")

    backend = Backend(redis_limiter, wait_out_window)
    if request.param == "fallback-redis":
        backend.limiter = FallbackRateLimiter(
            redis_limiter, MemoryRateLimiter(clock=clock), on_fallback=backend.fallbacks.append
        )
    yield backend
    await backend.limiter.close()
    if request.param == "fallback-redis":
        assert backend.fallbacks == []  # a live Redis is never bypassed


async def hit_n(limiter: RateLimiter, key: str, n: int, **kw: int) -> list[RateDecision]:
    return [await limiter.hit(key, **kw) for _ in range(n)]


# --- the contract ------------------------------------------------------------------


async def test_allows_up_to_the_limit_then_refuses(backend: Backend) -> None:
    key = new_key()
    decisions = await hit_n(backend.limiter, key, 3, limit=3, window_seconds=60)
    assert [d.allowed for d in decisions] == [True, True, True]
    assert [d.remaining for d in decisions] == [2, 1, 0]
    assert all(d.limit == 3 and d.retry_after == 0 and d.reset_after == 60 for d in decisions)

    refused = await backend.limiter.hit(key, limit=3, window_seconds=60)
    assert refused.allowed is False
    assert refused.limit == 3
    assert refused.remaining == 0
    assert 1 <= refused.retry_after <= 60
    assert 1 <= refused.reset_after <= 60


async def test_refused_hits_are_not_recorded(backend: Backend) -> None:
    key = new_key()
    assert (await backend.limiter.hit(key, limit=3, window_seconds=60, cost=2)).allowed
    for _ in range(5):
        refused = await backend.limiter.hit(key, limit=3, window_seconds=60, cost=2)
        assert refused.allowed is False
        assert refused.remaining == 1
    # Had a refused hit counted, this one would not fit.
    last = await backend.limiter.hit(key, limit=3, window_seconds=60)
    assert last.allowed is True
    assert last.remaining == 0


async def test_window_slides(backend: Backend) -> None:
    key = new_key()
    await hit_n(backend.limiter, key, 2, limit=2, window_seconds=1)
    assert (await backend.limiter.hit(key, limit=2, window_seconds=1)).allowed is False
    await backend.let_window_pass(key, 1)
    again = await backend.limiter.hit(key, limit=2, window_seconds=1)
    assert again.allowed is True
    assert again.remaining == 1


async def test_cost_above_one(backend: Backend) -> None:
    key = new_key()
    first = await backend.limiter.hit(key, limit=5, window_seconds=60, cost=3)
    assert (first.allowed, first.remaining) == (True, 2)
    too_much = await backend.limiter.hit(key, limit=5, window_seconds=60, cost=3)
    assert (too_much.allowed, too_much.remaining) == (False, 2)
    assert too_much.retry_after >= 1
    fits = await backend.limiter.hit(key, limit=5, window_seconds=60, cost=2)
    assert (fits.allowed, fits.remaining) == (True, 0)


async def test_peek_records_nothing_and_predicts_the_hit(backend: Backend) -> None:
    key = new_key()
    for _ in range(5):
        peeked = await backend.limiter.peek(key, limit=2, window_seconds=60)
        assert peeked == RateDecision(
            allowed=True, limit=2, remaining=1, retry_after=0, reset_after=60
        )
    hits = await hit_n(backend.limiter, key, 2, limit=2, window_seconds=60)
    assert [d.allowed for d in hits] == [True, True]

    peeked = await backend.limiter.peek(key, limit=2, window_seconds=60)
    refused = await backend.limiter.hit(key, limit=2, window_seconds=60)
    assert (peeked.allowed, peeked.remaining) == (refused.allowed, refused.remaining) == (False, 0)
    assert peeked.retry_after >= refused.retry_after >= 1


async def test_reset_clears_the_key(backend: Backend) -> None:
    key = new_key()
    await hit_n(backend.limiter, key, 3, limit=3, window_seconds=60)
    assert (await backend.limiter.peek(key, limit=3, window_seconds=60)).allowed is False
    await backend.limiter.reset(key)
    after = await backend.limiter.hit(key, limit=3, window_seconds=60)
    assert (after.allowed, after.remaining) == (True, 2)
    await backend.limiter.reset(new_key())  # an unknown key is harmless


async def test_keys_are_independent(backend: Backend) -> None:
    blocked, other = new_key(), new_key()
    await hit_n(backend.limiter, blocked, 2, limit=2, window_seconds=60)
    assert (await backend.limiter.hit(blocked, limit=2, window_seconds=60)).allowed is False
    free = await backend.limiter.hit(other, limit=2, window_seconds=60)
    assert (free.allowed, free.remaining) == (True, 1)


async def test_concurrent_hits_never_exceed_the_limit(backend: Backend) -> None:
    key = new_key()
    decisions = await asyncio.gather(
        *(backend.limiter.hit(key, limit=10, window_seconds=60) for _ in range(20))
    )
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 10
    assert sorted(d.remaining for d in allowed) == list(range(10))
    assert all(d.remaining == 0 and d.retry_after >= 1 for d in decisions if not d.allowed)


@pytest.mark.parametrize(
    ("limit", "window_seconds", "cost", "name"),
    [(0, 60, 1, "limit"), (5, 0, 1, "window_seconds"), (5, 60, 0, "cost"), (5, 60, 6, "cost")],
)
async def test_invalid_arguments_are_refused(
    backend: Backend, limit: int, window_seconds: int, cost: int, name: str
) -> None:
    key = new_key()
    with pytest.raises(ValueError, match=name):
        await backend.limiter.hit(key, limit=limit, window_seconds=window_seconds, cost=cost)
    if name != "cost":  # peek has no cost
        with pytest.raises(ValueError, match=name):
            await backend.limiter.peek(key, limit=limit, window_seconds=window_seconds)
    assert (await backend.limiter.peek(key, limit=1, window_seconds=60)).allowed is True


async def test_ping_tells_whether_the_shared_store_answers(backend: Backend) -> None:
    if backend.store_down:
        # The fallback keeps limiting, but readiness still learns that Redis is gone.
        with pytest.raises(StoreUnavailable):
            await backend.limiter.ping()
    else:
        await backend.limiter.ping()


async def hit_and_peek(
    limiter: RateLimiter, hit_key: str, peek_key: str, *, hit_limit: int = 3, peek_limit: int = 2
) -> tuple[RateDecision, RateDecision]:
    return await limiter.hit_and_peek(
        hit_key,
        peek_key,
        hit_limit=hit_limit,
        hit_window=60,
        peek_limit=peek_limit,
        peek_window=900,
    )


async def test_hit_and_peek_answers_like_a_hit_then_a_peek(backend: Backend) -> None:
    per_ip, pair = new_key(), new_key()
    hit, peek = await hit_and_peek(backend.limiter, per_ip, pair)
    assert hit == RateDecision(allowed=True, limit=3, remaining=2, retry_after=0, reset_after=60)
    assert peek == RateDecision(allowed=True, limit=2, remaining=1, retry_after=0, reset_after=900)
    # The hit part was recorded, the peek part was not.
    assert (await backend.limiter.peek(per_ip, limit=3, window_seconds=60)).remaining == 1
    assert (await backend.limiter.peek(pair, limit=2, window_seconds=900)).remaining == 1


async def test_hit_and_peek_records_the_hit_even_when_the_peek_refuses(backend: Backend) -> None:
    per_ip, pair = new_key(), new_key()
    await hit_n(backend.limiter, pair, 2, limit=2, window_seconds=900)
    hit, peek = await hit_and_peek(backend.limiter, per_ip, pair)
    assert (hit.allowed, hit.remaining) == (True, 2)
    assert (peek.allowed, peek.remaining) == (False, 0)
    assert 1 <= peek.retry_after <= 900
    # A request refused for its account+IP still counted toward the per-IP ceiling.
    assert (await backend.limiter.peek(per_ip, limit=3, window_seconds=60)).remaining == 1


async def test_hit_and_peek_refuses_the_hit_over_its_limit_and_records_nothing(
    backend: Backend,
) -> None:
    per_ip, pair = new_key(), new_key()
    decisions = [await hit_and_peek(backend.limiter, per_ip, pair) for _ in range(4)]
    assert [hit.allowed for hit, _ in decisions] == [True, True, True, False]
    assert all(peek.allowed for _, peek in decisions)  # the peek is answered all the same
    refused = decisions[-1][0]
    assert (refused.remaining, refused.limit) == (0, 3)
    assert 1 <= refused.retry_after <= 60
    # Refused hits are not recorded, exactly as for ``hit``.
    assert (await backend.limiter.hit(per_ip, limit=4, window_seconds=60)).allowed is True


async def test_hit_and_peek_on_one_key_peeks_after_the_hit(backend: Backend) -> None:
    key = new_key()
    hit, peek = await hit_and_peek(backend.limiter, key, key, hit_limit=2, peek_limit=2)
    assert (hit.remaining, peek.allowed, peek.remaining) == (1, True, 0)
    hit, peek = await hit_and_peek(backend.limiter, key, key, hit_limit=2, peek_limit=2)
    assert (hit.allowed, hit.remaining, peek.allowed) == (True, 0, False)


async def test_concurrent_hit_and_peeks_never_exceed_the_limit(backend: Backend) -> None:
    per_ip = new_key()
    decisions = await asyncio.gather(
        *(hit_and_peek(backend.limiter, per_ip, new_key(), hit_limit=10) for _ in range(20))
    )
    assert sum(hit.allowed for hit, _ in decisions) == 10


@pytest.mark.parametrize("part", ["hit", "peek"])
@pytest.mark.parametrize(("limit", "window", "name"), [(0, 60, "limit"), (5, 0, "window")])
async def test_hit_and_peek_refuses_invalid_arguments(
    backend: Backend, part: str, limit: int, window: int, name: str
) -> None:
    key = new_key()
    limits = {"hit_limit": 5, "hit_window": 60, "peek_limit": 5, "peek_window": 60}
    limits.update({f"{part}_limit": limit, f"{part}_window": window})
    with pytest.raises(ValueError, match=name):
        await backend.limiter.hit_and_peek(key, new_key(), **limits)
    assert (await backend.limiter.peek(key, limit=1, window_seconds=60)).allowed is True


# --- memory only: exact sliding on a fake clock, bounded keys ----------------------


async def test_memory_window_slides_hit_by_hit(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock=clock)
    key = new_key()
    await limiter.hit(key, limit=2, window_seconds=10)  # t = 0
    clock.advance(5)
    await limiter.hit(key, limit=2, window_seconds=10)  # t = 5
    clock.advance(1)  # t = 6: full until the t = 0 hit leaves at t = 10
    assert await limiter.hit(key, limit=2, window_seconds=10) == RateDecision(
        allowed=False, limit=2, remaining=0, retry_after=4, reset_after=9
    )
    clock.advance(3.999)  # hammering did not move the block: still just under 1 s left
    assert (await limiter.hit(key, limit=2, window_seconds=10)).retry_after == 1
    clock.advance(0.001)  # t = 10: exactly one slot frees (sliding, not fixed, window)
    assert await limiter.hit(key, limit=2, window_seconds=10) == RateDecision(
        allowed=True, limit=2, remaining=0, retry_after=0, reset_after=10
    )
    assert (await limiter.hit(key, limit=2, window_seconds=10)).retry_after == 5


async def test_memory_retry_after_waits_for_enough_room_for_the_cost(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock=clock)
    key = new_key()
    for _ in range(4):  # t = 0, 1, 2, 3
        await limiter.hit(key, limit=4, window_seconds=10)
        clock.advance(1)
    # A cost-3 hit needs the three oldest gone: the t = 2 one leaves at t = 12.
    refused = await limiter.hit(key, limit=4, window_seconds=10, cost=3)
    assert (refused.retry_after, refused.reset_after) == (8, 9)


async def test_memory_keys_are_bounded_least_recently_used_first(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock=clock, max_keys=3)
    keys = [new_key() for _ in range(5)]
    for key in keys[:3]:
        await limiter.hit(key, limit=1, window_seconds=60)
    await limiter.peek(keys[0], limit=1, window_seconds=60)  # touching keeps keys[0]
    for key in keys[3:]:
        await limiter.hit(key, limit=1, window_seconds=60)
    assert len(limiter) == 3
    assert (await limiter.peek(keys[0], limit=1, window_seconds=60)).allowed is False
    assert (await limiter.peek(keys[1], limit=1, window_seconds=60)).allowed is True  # evicted
    assert (await limiter.peek(keys[2], limit=1, window_seconds=60)).allowed is True  # evicted


async def test_memory_peek_and_refusals_add_no_keys(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock=clock, max_keys=10)
    for _ in range(50):
        await limiter.peek(new_key(), limit=1, window_seconds=60)
    assert len(limiter) == 0


async def test_memory_expired_keys_are_dropped_when_touched(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock=clock)
    key = new_key()
    await limiter.hit(key, limit=1, window_seconds=1)
    clock.advance(1)
    await limiter.peek(key, limit=1, window_seconds=1)
    assert len(limiter) == 0


async def test_memory_refuses_max_keys_below_one() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        MemoryRateLimiter(max_keys=0)


async def test_memory_close_forgets_everything() -> None:
    limiter = MemoryRateLimiter()
    await limiter.hit(new_key(), limit=1, window_seconds=60)
    await limiter.close()
    assert len(limiter) == 0


# --- Redis only: one count and one clock for every replica --------------------------


@pytest.mark.redis
async def test_redis_replicas_share_counts(redis_url: str, redis_prefix: str) -> None:
    replica_a = RedisRateLimiter.from_url(redis_url, prefix=redis_prefix)
    replica_b = RedisRateLimiter.from_url(redis_url, prefix=redis_prefix)
    other_deployment = RedisRateLimiter.from_url(redis_url, prefix=f"{redis_prefix}other:")
    try:
        key = new_key()
        assert (await replica_a.hit(key, limit=2, window_seconds=60)).remaining == 1
        assert (await replica_b.hit(key, limit=2, window_seconds=60)).remaining == 0
        assert (await replica_a.hit(key, limit=2, window_seconds=60)).allowed is False
        assert (await replica_b.peek(key, limit=2, window_seconds=60)).allowed is False
        # The prefix is the namespace: another deployment on the same Redis is unaffected.
        assert (await other_deployment.peek(key, limit=2, window_seconds=60)).allowed is True
        await replica_b.reset(key)
        assert (await replica_a.peek(key, limit=2, window_seconds=60)).allowed is True
    finally:
        for limiter in (replica_a, replica_b, other_deployment):
            await limiter.close()


@pytest.mark.redis
async def test_redis_replicas_hitting_concurrently_share_one_limit(
    redis_url: str, redis_prefix: str
) -> None:
    replicas = [RedisRateLimiter.from_url(redis_url, prefix=redis_prefix) for _ in range(4)]
    try:
        key = new_key()
        decisions = await asyncio.gather(
            *(replicas[i % 4].hit(key, limit=10, window_seconds=60) for i in range(20))
        )
        assert sum(d.allowed for d in decisions) == 10
    finally:
        for limiter in replicas:
            await limiter.close()


@pytest.mark.redis
async def test_redis_key_layout_and_expiry(raw_redis: Redis, redis_prefix: str) -> None:
    limiter = RedisRateLimiter(raw_redis, prefix=redis_prefix)
    try:
        key = new_key()
        await limiter.hit(key, limit=5, window_seconds=60, cost=3)
        redis_key = f"{redis_prefix}rl:{key}"
        assert limiter.key(key) == redis_key
        assert await raw_redis.zcard(redis_key) == 3  # one distinct member per unit of cost
        assert 0 < await raw_redis.pttl(redis_key) <= 60_000  # expires with its newest hit
        await limiter.hit(key, limit=5, window_seconds=60, cost=3)  # refused
        assert await raw_redis.zcard(redis_key) == 3
    finally:
        await limiter.close()
        # An injected client belongs to the caller: closing the limiter leaves it usable.
        assert await raw_redis.ping() is True


@pytest.mark.redis
async def test_build_rate_limiter_with_url_shares_redis(redis_url: str, redis_prefix: str) -> None:
    one = build_rate_limiter(redis_url, prefix=redis_prefix)
    two = build_rate_limiter(redis_url, prefix=redis_prefix)
    try:
        assert isinstance(one, FallbackRateLimiter)
        key = new_key()
        await one.hit(key, limit=1, window_seconds=60)
        assert (await two.hit(key, limit=1, window_seconds=60)).allowed is False
        await one.ping()
    finally:
        await one.close()
        await two.close()


# --- failures: need no running Redis ------------------------------------------------


def assert_unavailable(excinfo: pytest.ExceptionInfo[StoreUnavailable]) -> None:
    assert isinstance(excinfo.value.__cause__, RedisError | OSError)


async def test_unreachable_redis_raises_store_unavailable(dead_port: int) -> None:
    limiter = RedisRateLimiter.from_url(
        f"redis://127.0.0.1:{dead_port}/0", prefix="keyturn-test-dead:"
    )
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: limiter.hit(new_key(), limit=1, window_seconds=60),
        lambda: limiter.peek(new_key(), limit=1, window_seconds=60),
        lambda: limiter.reset(new_key()),
        limiter.ping,
    ]
    try:
        for call in calls:
            with pytest.raises(StoreUnavailable) as excinfo:
                await call()
            assert_unavailable(excinfo)
    finally:
        await limiter.close()


async def test_silent_redis_times_out_as_store_unavailable(silent_port: int) -> None:
    limiter = RedisRateLimiter.from_url(
        f"redis://127.0.0.1:{silent_port}/0",
        prefix="keyturn-test-silent:",
        socket_timeout=0.05,
        connect_timeout=0.05,
    )
    try:
        with pytest.raises(StoreUnavailable) as excinfo:
            await limiter.hit(new_key(), limit=1, window_seconds=60)
        assert_unavailable(excinfo)
    finally:
        await limiter.close()


async def test_fallback_over_dead_redis_limits_per_process_and_reports(dead_port: int) -> None:
    seen: list[str] = []
    limiter = build_rate_limiter(
        f"redis://127.0.0.1:{dead_port}/0", prefix="keyturn-test-dead:", on_fallback=seen.append
    )
    try:
        key = new_key()
        assert (await limiter.peek(key, limit=2, window_seconds=60)).allowed is True
        await hit_n(limiter, key, 2, limit=2, window_seconds=60)
        refused = await limiter.hit(key, limit=2, window_seconds=60)
        assert (refused.allowed, refused.remaining) == (False, 0)  # never opens a door
        await limiter.reset(key)
        assert (await limiter.hit(key, limit=2, window_seconds=60)).allowed is True
        decisions = [await hit_and_peek(limiter, key, new_key(), hit_limit=2) for _ in range(2)]
        assert [(hit.allowed, hit.remaining) for hit, _ in decisions] == [(True, 0), (False, 0)]
        assert seen == ["peek", "hit", "hit", "hit", "reset", "hit"] + ["hit_and_peek"] * 2
        with pytest.raises(StoreUnavailable):
            await limiter.ping()
    finally:
        await limiter.close()


async def test_fallback_without_callback_still_falls_back(dead_port: int) -> None:
    dead = RedisRateLimiter.from_url(f"redis://127.0.0.1:{dead_port}/0", prefix="x:")
    limiter = FallbackRateLimiter(dead, MemoryRateLimiter())
    try:
        key = new_key()
        assert (await limiter.hit(key, limit=1, window_seconds=60)).allowed is True
        assert (await limiter.hit(key, limit=1, window_seconds=60)).allowed is False
        await limiter.reset(key)
    finally:
        await limiter.close()


class _Switchable:
    """A shared limiter that works until ``down`` is set, then fails like a lost Redis."""

    def __init__(self) -> None:
        self.shared = MemoryRateLimiter()
        self.down = False

    async def hit(self, key: str, **kw: int) -> RateDecision:
        if self.down:
            raise StoreUnavailable("redis hit failed: TimeoutError")
        return await self.shared.hit(key, **kw)

    async def hit_and_peek(
        self, hit_key: str, peek_key: str, **kw: int
    ) -> tuple[RateDecision, RateDecision]:
        if self.down:
            raise StoreUnavailable("redis rate limit hit_and_peek failed: TimeoutError")
        return await self.shared.hit_and_peek(hit_key, peek_key, **kw)

    async def close(self) -> None:
        await self.shared.close()


async def test_the_fallback_counts_on_from_the_hits_the_shared_store_allowed() -> None:
    """A Redis failure in mid-window does not reopen a limit this process already used up:
    the hits Redis allowed were mirrored in the process (a 0.5 s Redis timeout under load
    once let a ceiling reached a moment before start again from zero)."""
    primary = _Switchable()
    limiter = FallbackRateLimiter(cast(RedisRateLimiter, primary), MemoryRateLimiter())
    try:
        key = new_key()
        allowed = await hit_n(limiter, key, 3, limit=3, window_seconds=60)
        assert [decision.allowed for decision in allowed] == [True] * 3
        primary.down = True
        refused = await limiter.hit(key, limit=3, window_seconds=60)
        assert (refused.allowed, refused.remaining) == (False, 0)
        other = await limiter.hit(new_key(), limit=3, window_seconds=60)
        assert other.allowed is True  # only what was counted is counted
    finally:
        await limiter.close()


async def test_build_rate_limiter_without_url_is_in_process() -> None:
    assert isinstance(build_rate_limiter(None, prefix="x:"), MemoryRateLimiter)
    assert isinstance(build_rate_limiter("", prefix="x:"), MemoryRateLimiter)


async def test_build_rate_limiter_with_url_does_not_connect_yet(dead_port: int) -> None:
    limiter = build_rate_limiter(f"redis://127.0.0.1:{dead_port}/0", prefix="x:")
    assert isinstance(limiter, FallbackRateLimiter)
    await limiter.close()


async def test_the_fallback_counts_on_from_the_hits_hit_and_peek_allowed() -> None:
    """The same shadow for the one-round-trip admission: a Redis failure between two
    requests of one client (or in the middle of the window) does not reopen its ceiling."""
    primary = _Switchable()
    seen: list[str] = []
    limiter = FallbackRateLimiter(
        cast(RedisRateLimiter, primary), MemoryRateLimiter(), on_fallback=seen.append
    )
    try:
        per_ip, pair = new_key(), new_key()
        for _ in range(3):
            hit, peek = await hit_and_peek(limiter, per_ip, pair)
            assert (hit.allowed, peek.allowed) == (True, True)
        primary.down = True
        hit, peek = await hit_and_peek(limiter, per_ip, pair)
        assert (hit.allowed, hit.remaining) == (False, 0)
        # The peek was never recorded anywhere: no shadow, no invented failures.
        assert (peek.allowed, peek.remaining) == (True, 1)
        assert seen == ["hit_and_peek"]
    finally:
        await limiter.close()


@pytest.mark.redis
async def test_a_lost_answer_counts_the_hit_in_both_places(
    redis_url: str, redis_prefix: str
) -> None:
    """Redis runs the script but its answer never arrives (a timeout mid-call): the
    per-process answer counts the hit again, so the request is counted twice, never zero
    times (fails closed)."""
    redis_limiter = RedisRateLimiter.from_url(redis_url, prefix=redis_prefix)
    seen: list[str] = []
    limiter = FallbackRateLimiter(redis_limiter, MemoryRateLimiter(), on_fallback=seen.append)
    batch = redis_limiter._batch

    class RanThenLost:
        async def execute(self, *args: object) -> object:
            await batch.execute(*args)
            raise RedisTimeoutError("Timeout reading from socket")

    try:
        per_ip, pair = new_key(), new_key()
        redis_limiter._batch = RanThenLost()  # type: ignore[assignment]
        hit, _ = await hit_and_peek(limiter, per_ip, pair, hit_limit=2)
        assert (hit.allowed, hit.remaining) == (True, 1)
        assert seen == ["hit_and_peek"]
        redis_limiter._batch = batch
        # Redis recorded the hit the process never heard about; the process counted its own.
        shared, _ = await hit_and_peek(limiter, per_ip, pair, hit_limit=2)
        assert (shared.allowed, shared.remaining) == (True, 0)
        primary_down = FallbackRateLimiter(cast(RedisRateLimiter, _Down()), limiter._fallback)
        local, _ = await hit_and_peek(primary_down, per_ip, pair, hit_limit=2)
        assert local.allowed is False  # 1 lost-answer hit + 1 shadowed hit = the limit
    finally:
        await limiter.close()


class _Down:
    async def hit_and_peek(self, *args: str, **kw: int) -> tuple[RateDecision, RateDecision]:
        raise StoreUnavailable("redis rate limit hit_and_peek failed: ConnectionError")
