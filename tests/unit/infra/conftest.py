"""Fixtures shared by the infra adapter tests."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest
import redis

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
