"""Fixtures shared by the infra adapter tests and the store contract suites.

The rate-limit and deny-list contract suites run over memory and Redis backends with the
same scaffolding: a fake clock for the memory ones, a raw Redis client to look under the
adapter, and a bounded wait for a key to expire.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, Self

import anyio
import pytest
import redis
from redis.asyncio import Redis

from keyturn.infra.redis_client import create_redis_client

REDIS_URL_ENV = "KEYTURN_TEST_REDIS_URL"


@pytest.fixture
def anyio_backend() -> str:
    """Run the async tests on asyncio only (the service runs on uvloop/asyncio)."""
    return "asyncio"


@pytest.fixture
def redis_url() -> str:
    """URL of the shared test Redis; skips the test when none is configured."""
    url = os.environ.get(REDIS_URL_ENV)
    if not url:
        pytest.skip(f"{REDIS_URL_ENV} is not set: Redis backend not tested (.ci/run sets it)")
    return url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix owned by this test alone; its keys are deleted afterwards.

    The Redis server is shared with other runs, so tests never FLUSHDB: they scan and
    delete only their own prefix. The fixture is synchronous (a blocking client for the
    cleanup) so async fixtures can request it through ``request.getfixturevalue``.
    """
    prefix = f"keyturn-test-infra-{uuid.uuid4().hex}:"
    yield prefix
    with redis.Redis.from_url(redis_url, socket_timeout=5) as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)


@pytest.fixture
def dead_port() -> int:
    """A local TCP port where nothing listens (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local port that accepts connections (kernel backlog) but never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


class FakeClock:
    """Monotonic clock the memory stores read; tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A fresh fake clock at t = 1000 s."""
    return FakeClock()


class RedisProbe:
    """A plain client on the test Redis, to look under an adapter (keys, TTLs)."""

    def __init__(self, client: Redis) -> None:
        self.client = client

    async def wait_gone(self, key: str, polls: int) -> bool:
        """Poll every 10 ms, at most ``polls`` times, until ``key`` has expired; True when
        it did (expiry is checked by polling, never by wall time)."""
        for _ in range(polls):
            if not await self.client.exists(key):
                return True
            await anyio.sleep(0.01)
        return False


@pytest.fixture
async def redis_probe() -> AsyncIterator[RedisProbe | None]:
    """A probe on the test Redis, or None when none is configured.

    It does not skip, so a backend fixture parametrised over memory and Redis can take it
    (an async fixture cannot be fetched later through ``request.getfixturevalue``).
    """
    url = os.environ.get(REDIS_URL_ENV)
    if not url:
        yield None
        return
    probe = RedisProbe(create_redis_client(url))
    yield probe
    await probe.client.aclose()


@pytest.fixture
def raw_redis(redis_url: str, redis_probe: RedisProbe | None) -> Redis:
    """The probe's client; skips the test when no Redis is configured."""
    assert redis_probe is not None  # redis_url skipped the test otherwise
    return redis_probe.client


class FakeUnitOfWork:
    """A unit of work holding the given fake repositories (``users=...``, ``clients=...``)."""

    def __init__(self, **repositories: Any) -> None:
        self.__dict__.update(repositories)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None
