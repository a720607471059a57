"""Commands asked in one turn of the event loop leave as one pipeline (``CommandBatcher``).

A recording client shows what is sent; a real Redis shows the replies are the ones each
command gets alone, and the rate limiter still loads its script when Redis lost it.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from keyturn.infra.rate_limit import RedisRateLimiter
from keyturn.infra.redis_batch import CommandBatcher

pytestmark = pytest.mark.anyio


class _Pipeline:
    def __init__(self, client: _Recording) -> None:
        self.client = client
        self.queued: list[tuple[Any, ...]] = []

    def execute_command(self, *args: Any) -> None:
        self.queued.append(args)

    async def execute(self, *, raise_on_error: bool) -> list[Any]:
        assert raise_on_error is False  # each caller gets its own command's error
        self.client.sent.append(list(self.queued))
        if self.client.down:
            raise RedisConnectionError("Connection refused")
        return [self.client.answer(args) for args in self.queued]


class _Recording:
    """Answers ``ECHO x`` with x and ``FAIL`` with a command error; records each send."""

    def __init__(self) -> None:
        self.sent: list[list[tuple[Any, ...]]] = []
        self.down = False

    @staticmethod
    def answer(args: tuple[Any, ...]) -> Any:
        return ResponseError("no such command") if args[0] == "FAIL" else args[1]

    def pipeline(self, *, transaction: bool) -> _Pipeline:
        assert transaction is False  # each command is its own, as when sent alone
        return _Pipeline(self)

    async def execute_command(self, *args: Any) -> Any:
        self.sent.append([args])
        if self.down:
            raise RedisConnectionError("Connection refused")
        reply = self.answer(args)
        if isinstance(reply, Exception):
            raise reply
        return reply


@pytest.fixture
def client() -> _Recording:
    return _Recording()


@pytest.fixture
def batcher(client: _Recording) -> CommandBatcher:
    return CommandBatcher(cast(Redis, client))


async def test_commands_of_one_turn_leave_together(
    client: _Recording, batcher: CommandBatcher
) -> None:
    replies = await asyncio.gather(*(batcher.execute("ECHO", n) for n in range(5)))
    assert replies == list(range(5))
    assert client.sent == [[("ECHO", n) for n in range(5)]]
    # One asked alone goes out alone, as a plain command.
    assert await batcher.execute("ECHO", "alone") == "alone"
    assert client.sent[-1] == [("ECHO", "alone")]
    assert len(client.sent) == 2


async def test_each_caller_gets_its_own_error(client: _Recording, batcher: CommandBatcher) -> None:
    good, bad = await asyncio.gather(
        batcher.execute("ECHO", 1), batcher.execute("FAIL"), return_exceptions=True
    )
    assert good == 1
    assert isinstance(bad, ResponseError)
    with pytest.raises(ResponseError):
        await batcher.execute("FAIL")


async def test_a_lost_connection_fails_every_caller(
    client: _Recording, batcher: CommandBatcher
) -> None:
    client.down = True
    answers = await asyncio.gather(
        *(batcher.execute("ECHO", n) for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(answer, RedisConnectionError) for answer in answers)
    with pytest.raises(RedisConnectionError):
        await batcher.execute("ECHO", "alone")


async def test_a_cancelled_caller_leaves_the_others_their_replies(
    client: _Recording, batcher: CommandBatcher
) -> None:
    first = asyncio.ensure_future(batcher.execute("ECHO", 1))
    second = asyncio.ensure_future(batcher.execute("ECHO", 2))
    await asyncio.sleep(0)  # both queued
    first.cancel()
    assert await second == 2
    assert first.cancelled()
    assert client.sent == [[("ECHO", 1), ("ECHO", 2)]]


@pytest.mark.redis
async def test_replies_from_redis_are_each_commands_own(redis_url: str, redis_prefix: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        keys = [f"{redis_prefix}batch:{n}" for n in range(4)]
        await redis.set(keys[0], b"zero")
        await redis.set(keys[2], b"two")
        batcher = CommandBatcher(redis)
        together = await asyncio.gather(
            batcher.execute("MGET", keys[0], keys[1]),
            batcher.execute("MGET", keys[2], keys[3]),
            batcher.execute("GET", keys[2]),
            batcher.execute("INCR", keys[0]),  # not an integer: its own error only
            return_exceptions=True,
        )
        assert together[:3] == [[b"zero", None], [b"two", None], b"two"]
        assert isinstance(together[3], ResponseError)
        assert await batcher.execute("MGET", *keys) == [b"zero", None, b"two", None]
    finally:
        await redis.aclose()


@pytest.mark.redis
async def test_the_rate_limiter_loads_its_script_when_redis_lost_it(
    redis_url: str, redis_prefix: str
) -> None:
    limiter = RedisRateLimiter.from_url(redis_url, prefix=redis_prefix)

    class _Forgotten:
        """Redis after a restart: EVALSHA answers NOSCRIPT."""

        async def execute(self, *args: Any) -> Any:
            raise NoScriptError("No matching script. Please use EVAL.")

    try:
        limiter._batch = cast(CommandBatcher, _Forgotten())
        first = await limiter.hit("batch-key", limit=2, window_seconds=60)
        second = await limiter.hit("batch-key", limit=2, window_seconds=60)
        assert (first.allowed, first.remaining) == (True, 1)
        assert (second.allowed, second.remaining) == (True, 0)
    finally:
        await limiter.close()
