"""Client-side CPU per Redis command: sent one by one, or batched per loop turn.

``python -m bench.probe_redis_batch [--callers 32] [--commands 1000]`` runs the deny-list's
MGET from ``--callers`` concurrent coroutines on one uvloop, first straight through
redis-py, then through ``keyturn.infra.redis_batch.CommandBatcher``, against the local
Redis (``redis://127.0.0.1:6379/0``; two keys under ``keyturn-probe:``, deleted after).
It prints the process CPU per command and the commands per second of each way: the cost
issue 18's batching removes. Numbers, never a pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop
from redis.asyncio import Redis

from keyturn.infra.redis_batch import CommandBatcher

KEYS = ("keyturn-probe:listed", "keyturn-probe:sealed")


async def _measure(
    name: str, run: Callable[..., Awaitable[Any]], callers: int, commands: int
) -> None:
    async def caller() -> None:
        for _ in range(commands):
            await run("MGET", *KEYS)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    total = callers * commands
    print(f"{name:>9}: {cpu / total * 1e6:6.1f} us CPU per command, {total / wall:8,.0f}/s")


async def main(callers: int, commands: int, url: str) -> None:
    redis = Redis.from_url(url)
    try:
        await redis.set(KEYS[1], b"1")
        # Warm the pool to the callers' number first, so neither way pays the connects.
        await _measure("warm-up", redis.execute_command, callers, 20)
        await _measure("direct", redis.execute_command, callers, commands)
        await _measure("batched", CommandBatcher(redis).execute, callers, commands)
    finally:
        await redis.delete(*KEYS)
        await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    uvloop.run(main(args.callers, args.commands, args.redis))
