"""The one place that builds a ``redis.asyncio`` client and maps its failures.

Every Redis-backed adapter takes a client built here (or an injected one in tests),
so timeouts, retries and health checks are the same for all of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis.asyncio import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from keyturn.infra.errors import StoreUnavailable

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_SOCKET_TIMEOUT",
    "create_redis_client",
    "store_errors",
]

# Redis sits on the request path (deny-list, rate limits): a slow Redis must turn into
# a fast StoreUnavailable and the database fallback, not into hung requests.
DEFAULT_SOCKET_TIMEOUT = 0.5
DEFAULT_CONNECT_TIMEOUT = 0.5
# Re-check an idle pooled connection before use so a Redis restart costs no request.
DEFAULT_HEALTH_CHECK_INTERVAL = 30


def create_redis_client(
    url: str,
    *,
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    health_check_interval: int = DEFAULT_HEALTH_CHECK_INTERVAL,
    retries: int = 1,
) -> Redis:
    """Build an asyncio Redis client from ``url`` with short, explicit timeouts.

    Args:
        url: ``redis://`` / ``rediss://`` / ``unix://`` URL, database number included.
        socket_timeout: Seconds to wait for any single command's answer.
        connect_timeout: Seconds to wait for a TCP (and TLS) connection.
        health_check_interval: Seconds of idleness after which a pooled connection is
            pinged before reuse.
        retries: Retries on connection or timeout errors. redis-py defaults to 10 with
            exponential backoff (seconds of stall); one quick retry is enough to replace
            a stale pooled connection.

    Returns:
        A client with ``decode_responses`` off (adapters work with bytes). Nothing is
        connected until the first command.
    """
    return Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        health_check_interval=health_check_interval,
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), retries),
        decode_responses=False,
    )


@contextmanager
def store_errors(operation: str) -> Iterator[None]:
    """Turn every driver or socket failure inside the block into ``StoreUnavailable``.

    Args:
        operation: Short name of what was attempted, for the error message.

    Raises:
        StoreUnavailable: On ``RedisError`` (which covers redis-py's ``ConnectionError``
            and ``TimeoutError``) or ``OSError`` (the builtin ``ConnectionError`` and
            ``TimeoutError``, which some socket paths raise unwrapped).
    """
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(f"redis {operation} failed: {type(exc).__name__}") from exc
