"""Redis limits that degrade to per-process limits (DESIGN.md section 6), and the choice
of limiter for a deployment. The limiters themselves are in ``rate_limit.py``."""

from __future__ import annotations

from collections.abc import Callable

from keyturn.domain import RateDecision
from keyturn.errors import StoreUnavailable
from keyturn.infra.rate_limit import MemoryRateLimiter, RedisRateLimiter
from keyturn.infra.redis_client import DEFAULT_CONNECT_TIMEOUT, DEFAULT_SOCKET_TIMEOUT

__all__ = ["SHADOW_KEYS", "FallbackRateLimiter", "build_rate_limiter"]


class FallbackRateLimiter:
    """Shared limits from ``primary``; per-process limits from ``fallback`` when it fails.

    Each call tries the primary; on ``StoreUnavailable`` it reports the operation to
    ``on_fallback`` (log it, count it) and answers from the fallback, so a Redis outage
    gives per-process limits instead of none. Every hit the primary records is mirrored
    in the fallback, so a failure in mid-window counts on from this process's share of
    the window instead of from zero (a single Redis timeout used to reopen a ceiling the
    process had just reached). Hits recorded during the outage stay in the fallback; they
    are not replayed into Redis.

    Args:
        primary: The shared limiter (normally ``RedisRateLimiter``).
        fallback: The in-process limiter used while the primary is unreachable.
        on_fallback: Called with ``"hit"``, ``"peek"``, ``"hit_and_peek"`` or ``"reset"``
            on each fallback.
    """

    def __init__(
        self,
        primary: RedisRateLimiter,
        fallback: MemoryRateLimiter,
        *,
        on_fallback: Callable[[str], None] | None = None,
    ) -> None:
        self._primary = primary
        self._fallback = fallback
        self._on_fallback = on_fallback

    async def hit(
        self, key: str, *, limit: int, window_seconds: int, cost: int = 1
    ) -> RateDecision:
        """See ``RateLimiter.hit``; never raises ``StoreUnavailable``."""
        try:
            decision = await self._primary.hit(
                key, limit=limit, window_seconds=window_seconds, cost=cost
            )
        except StoreUnavailable:
            self._fell_back("hit")
            return await self._fallback.hit(
                key, limit=limit, window_seconds=window_seconds, cost=cost
            )
        if decision.allowed:
            # The shadow count (class docstring): in memory, no await, no I/O.
            await self._fallback.hit(key, limit=limit, window_seconds=window_seconds, cost=cost)
        return decision

    async def peek(self, key: str, *, limit: int, window_seconds: int) -> RateDecision:
        """See ``RateLimiter.peek``; never raises ``StoreUnavailable``."""
        try:
            return await self._primary.peek(key, limit=limit, window_seconds=window_seconds)
        except StoreUnavailable:
            self._fell_back("peek")
        return await self._fallback.peek(key, limit=limit, window_seconds=window_seconds)

    async def hit_and_peek(
        self,
        hit_key: str,
        peek_key: str,
        *,
        hit_limit: int,
        hit_window: int,
        peek_limit: int,
        peek_window: int,
    ) -> tuple[RateDecision, RateDecision]:
        """See ``RateLimiter.hit_and_peek``; never raises ``StoreUnavailable``.

        The script is atomic on the server: either both parts ran there or neither did.
        When the answer is lost (a timeout after the server ran it) both parts are
        answered here from the per-process counts, so the hit may count twice: closed.
        """
        limits = {
            "hit_limit": hit_limit,
            "hit_window": hit_window,
            "peek_limit": peek_limit,
            "peek_window": peek_window,
        }
        try:
            hit, peek = await self._primary.hit_and_peek(hit_key, peek_key, **limits)
        except StoreUnavailable:
            self._fell_back("hit_and_peek")
            return await self._fallback.hit_and_peek(hit_key, peek_key, **limits)
        if hit.allowed:
            # The shadow count of the hit part (class docstring); a peek records nothing.
            await self._fallback.hit(hit_key, limit=hit_limit, window_seconds=hit_window)
        return hit, peek

    async def reset(self, key: str) -> None:
        """Clear ``key`` in both limiters; never raises ``StoreUnavailable``.

        If the primary is unreachable its count stays until the window passes: the
        reset fails closed (still limited), it never opens anything.
        """
        await self._fallback.reset(key)
        try:
            await self._primary.reset(key)
        except StoreUnavailable:
            self._fell_back("reset")

    async def ping(self) -> None:
        """Ping the primary: readiness reports the shared store's real state.

        Raises:
            StoreUnavailable: The primary could not be reached (calls still work).
        """
        await self._primary.ping()

    async def close(self) -> None:
        """Close both limiters."""
        try:
            await self._primary.close()
        finally:
            await self._fallback.close()

    def _fell_back(self, operation: str) -> None:
        if self._on_fallback is not None:
            self._on_fallback(operation)


# Keys the per-process shadow of the shared limits keeps: at most about 25 MB even if every
# key held a full per-IP minute (300 hits), far less in practice.
SHADOW_KEYS = 10_000


def build_rate_limiter(
    redis_url: str | None,
    *,
    prefix: str,
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    on_fallback: Callable[[str], None] | None = None,
) -> FallbackRateLimiter | MemoryRateLimiter:
    """Pick the rate limiter for this deployment.

    Args:
        redis_url: ``KEYTURN_REDIS_URL``; ``None`` (or empty) means one process and the
            in-memory limiter.
        prefix: Redis key namespace (ignored by the memory limiter).
        socket_timeout: Seconds to wait for one Redis command's answer.
        connect_timeout: Seconds to wait for a Redis connection.
        on_fallback: Told each time a Redis failure is answered per process.

    Returns:
        ``FallbackRateLimiter(RedisRateLimiter, MemoryRateLimiter)`` when a URL is given,
        else a ``MemoryRateLimiter``.
    """
    if redis_url:
        redis_limiter = RedisRateLimiter.from_url(
            redis_url,
            prefix=prefix,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
        )
        # The fallback also shadows every allowed hit, so its size is bounded tighter than a
        # single worker's own limiter: past it the least recently used keys start from zero.
        fallback = MemoryRateLimiter(max_keys=SHADOW_KEYS)
        return FallbackRateLimiter(redis_limiter, fallback, on_fallback=on_fallback)
    return MemoryRateLimiter()
