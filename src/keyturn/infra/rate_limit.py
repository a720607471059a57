"""Sliding-window rate limits shared by every replica (DESIGN.md section 5).

Each limit is a sliding log: the exact number of hits recorded within the last
``window_seconds``, no fixed-window burst at the boundary. A decision carries what the
edge needs for ``Retry-After`` (RFC 9110 section 10.2.3) and the ``RateLimit-Limit`` /
``RateLimit-Remaining`` / ``RateLimit-Reset`` headers of
draft-ietf-httpapi-ratelimit-headers.

A refused hit is not recorded: a client hammering while blocked does not push its own
block further out, it is let in again ``retry_after`` seconds later (the per-IP ceiling
still bounds how fast it can hammer). Only allowed hits consume the window.

``hit_and_peek`` decides a hit on one key and a peek on another in one atomic step (one
Redis round trip): a credential request's per-IP hit and its account+IP failure check.

One contract suite (``tests/unit/infra/test_rate_limit_contract.py``) covers
``MemoryRateLimiter`` (one process), ``RedisRateLimiter`` (one atomic script on the Redis
clock, shared by every replica) and ``FallbackRateLimiter`` (``rate_limit_fallback.py``:
Redis, or per-process limits while Redis is unreachable: degraded, never open; section 6).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from keyturn.domain import RateDecision
from keyturn.infra.redis_client import (
    RedisAdapter,
    store_errors,
)

__all__ = ["MemoryRateLimiter", "RedisRateLimiter"]

_MS = 1000


def _check(limit: int, window_seconds: int, cost: int) -> None:
    # A zero window or limit would be "never count" or "always refuse" by accident, and a
    # cost above the limit could never pass: refuse all of them the same way everywhere.
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if window_seconds < 1:
        raise ValueError("window_seconds must be at least 1")
    if not 1 <= cost <= limit:
        raise ValueError("cost must be between 1 and limit")


def _ceil_seconds(ms: int) -> int:
    return -(-ms // _MS)


def _decision(limit: int, allowed: int, count: int, retry_ms: int, reset_ms: int) -> RateDecision:
    return RateDecision(
        allowed=bool(allowed),
        limit=limit,
        remaining=max(0, limit - count),
        retry_after=0 if allowed else max(1, _ceil_seconds(retry_ms)),
        reset_after=max(0, _ceil_seconds(reset_ms)),
    )


class MemoryRateLimiter:
    """In-process sliding logs for a single worker.

    Each key holds a deque of hit times (integer milliseconds of ``clock``). Calls never
    await, so under asyncio each one is atomic. Memory is bounded: beyond ``max_keys``
    the least recently touched key is forgotten (its count restarts at zero), so size
    ``max_keys`` well above the number of keys live within the longest window.

    Args:
        clock: Monotonic seconds; injectable so tests move time without sleeping.
        max_keys: Most keys held at once.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._clock = clock
        self._max_keys = max_keys
        self._logs: OrderedDict[str, deque[int]] = OrderedDict()

    async def hit(
        self, key: str, *, limit: int, window_seconds: int, cost: int = 1
    ) -> RateDecision:
        """See ``RateLimiter.hit``."""
        _check(limit, window_seconds, cost)
        return self._decide(key, limit, window_seconds * _MS, cost, record=True)

    async def peek(self, key: str, *, limit: int, window_seconds: int) -> RateDecision:
        """See ``RateLimiter.peek``."""
        _check(limit, window_seconds, 1)
        return self._decide(key, limit, window_seconds * _MS, 1, record=False)

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
        """See ``RateLimiter.hit_and_peek``: no await in between, so atomic here too."""
        _check(hit_limit, hit_window, 1)
        _check(peek_limit, peek_window, 1)
        hit = self._decide(hit_key, hit_limit, hit_window * _MS, 1, record=True)
        return hit, self._decide(peek_key, peek_limit, peek_window * _MS, 1, record=False)

    async def reset(self, key: str) -> None:
        """See ``RateLimiter.reset``."""
        self._logs.pop(key, None)

    async def ping(self) -> None:
        """Always answers: the counters live in this process."""

    async def close(self) -> None:
        """Drop every counter."""
        self._logs.clear()

    def __len__(self) -> int:
        """Number of keys held."""
        return len(self._logs)

    def _decide(
        self, key: str, limit: int, window_ms: int, cost: int, *, record: bool
    ) -> RateDecision:
        now = round(self._clock() * _MS)
        log = self._logs.get(key)
        if log is None:
            log = deque()
        else:
            # Same boundary as Redis: a hit exactly window_ms old has left the window.
            while log and log[0] <= now - window_ms:
                log.popleft()
            if log:
                self._logs.move_to_end(key)
            else:
                del self._logs[key]
        count = len(log)
        if count + cost <= limit:
            if record:
                if not count:
                    self._logs[key] = log
                    if len(self._logs) > self._max_keys:
                        self._logs.popitem(last=False)
                log.extend([now] * cost)
            return _decision(limit, 1, count + cost, 0, window_ms)
        # Refused, so count > limit - cost >= 0: there is room once the
        # (count - limit + cost)-th oldest hit leaves the window.
        blocker = log[count - limit + cost - 1]
        return _decision(limit, 0, count, blocker + window_ms - now, log[-1] + window_ms - now)


# Atomic check-and-record on the Redis server clock (one script: no race between the
# count and the add, and every replica reads the same TIME). Scores are milliseconds,
# which Lua's number-to-string (%.14g) renders exactly. The script takes one or more keys,
# each with four arguments (limit, window ms, cost, record "1" | peek "0") after the
# member tag in ARGV[1], and decides them in order on one clock reading: a request's
# per-IP hit and its account+IP peek cost one round trip (issue 18). A peek only drops
# expired entries. Several keys in one script assume one Redis (no cluster slots).
_HIT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tag = ARGV[1]
local out = {}
for k = 1, #KEYS do
  local key = KEYS[k]
  local limit = tonumber(ARGV[k * 4 - 2])
  local window = tonumber(ARGV[k * 4 - 1])
  local cost = tonumber(ARGV[k * 4])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  if count + cost <= limit then
    if ARGV[k * 4 + 1] == '1' then
      local args = {}
      for i = 1, cost do
        args[#args + 1] = now
        args[#args + 1] = now .. ':' .. tag .. ':' .. k .. ':' .. i
      end
      redis.call('ZADD', key, unpack(args))
      redis.call('PEXPIRE', key, window)
    end
    out[#out + 1] = 1
    out[#out + 1] = count + cost
    out[#out + 1] = 0
    out[#out + 1] = window
  else
    local idx = count - limit + cost - 1
    local blocker = redis.call('ZRANGE', key, idx, idx, 'WITHSCORES')
    local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    out[#out + 1] = 0
    out[#out + 1] = count
    out[#out + 1] = tonumber(blocker[2]) + window - now
    out[#out + 1] = tonumber(newest[2]) + window - now
  end
end
return out
"""


class RedisRateLimiter(RedisAdapter):
    """Sliding logs in Redis: one sorted set per key, scored by hit time in ms.

    Each call is one Lua script run, so concurrent hits from any number of replicas
    never exceed the limit. A key expires with its newest hit, so idle keys cost nothing.
    Built like every ``RedisAdapter`` (client or ``from_url``, key prefix).
    """

    component = "rate_limit"

    def __init__(self, client: Redis, *, prefix: str, owns_client: bool = False) -> None:
        super().__init__(client, prefix=prefix, owns_client=owns_client)
        self._script = client.register_script(_HIT_SCRIPT)

    def key(self, key: str) -> str:
        """Redis key holding the sliding log of ``key``."""
        return self._namespaced(f"rl:{key}")

    async def hit(
        self, key: str, *, limit: int, window_seconds: int, cost: int = 1
    ) -> RateDecision:
        """See ``RateLimiter.hit``."""
        _check(limit, window_seconds, cost)
        return await self._run("hit", key, limit, window_seconds, cost, record=True)

    async def peek(self, key: str, *, limit: int, window_seconds: int) -> RateDecision:
        """See ``RateLimiter.peek``."""
        _check(limit, window_seconds, 1)
        return await self._run("peek", key, limit, window_seconds, 1, record=False)

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
        """See ``RateLimiter.hit_and_peek``: one script run, one round trip."""
        _check(hit_limit, hit_window, 1)
        _check(peek_limit, peek_window, 1)
        hit, peek = await self._script_run(
            "hit_and_peek",
            [
                (hit_key, hit_limit, hit_window, 1, True),
                (peek_key, peek_limit, peek_window, 1, False),
            ],
        )
        return hit, peek

    async def reset(self, key: str) -> None:
        """See ``RateLimiter.reset``."""
        with store_errors("rate limit reset", self.component):
            await self._client.delete(self.key(key))

    async def _run(
        self, operation: str, key: str, limit: int, window_seconds: int, cost: int, *, record: bool
    ) -> RateDecision:
        (decision,) = await self._script_run(
            operation, [(key, limit, window_seconds, cost, record)]
        )
        return decision

    async def _script_run(
        self, operation: str, checks: list[tuple[str, int, int, int, bool]]
    ) -> list[RateDecision]:
        # Random member suffix: hits in the same millisecond from any replica stay distinct.
        args: list[str | int] = [secrets.token_hex(8)]
        for _key, limit, window_seconds, cost, record in checks:
            args += [limit, window_seconds * _MS, cost, "1" if record else "0"]
        keys = [self.key(check[0]) for check in checks]
        with store_errors(f"rate limit {operation}", self.component):
            try:
                reply = await self._batch.execute(
                    "EVALSHA", self._script.sha, len(keys), *keys, *args
                )
            except NoScriptError:
                # Redis lost its scripts (a restart): the script object loads it again.
                reply = await self._script(keys=keys, args=args)
        values = [int(v) for v in reply]
        return [_decision(check[1], *values[i * 4 : i * 4 + 4]) for i, check in enumerate(checks)]
