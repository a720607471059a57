"""The one place that builds a ``redis.asyncio`` client, maps its failures and names keys.

Every Redis-backed adapter is a ``RedisAdapter`` on a client built here (or an injected
one in tests), so timeouts, retries, health checks, key prefixes and ownership of the
client are the same for all of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

from redis.asyncio import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from keyturn.errors import StoreUnavailable
from keyturn.infra.redis_batch import CommandBatcher
from keyturn.observability.metrics import REDIS_ERRORS

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_SOCKET_TIMEOUT",
    "RedisAdapter",
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
def store_errors(operation: str, component: str = "redis") -> Iterator[None]:
    """Turn every driver or socket failure inside the block into ``StoreUnavailable``.

    Each one is counted in ``keyturn_redis_errors_total{component}``: every Redis call of
    every adapter runs inside this block, so the one family sees every failure.

    Args:
        operation: Short name of what was attempted, for the error message.
        component: The adapter (``revocation``, ``rate_limit``, ``ceremonies``).

    Raises:
        StoreUnavailable: On ``RedisError`` (which covers redis-py's ``ConnectionError``
            and ``TimeoutError``), ``OSError`` (the builtin ``ConnectionError`` and
            ``TimeoutError``, which some socket paths raise unwrapped), or uvloop's
            ``RuntimeError`` "... the handler is closed" for a write on a transport that
            closed under it (Redis went away between the connect and the first command),
            which was a 500 (issue 17). Any other ``RuntimeError`` propagates.
    """
    try:
        yield
    except (RedisError, OSError) as exc:
        REDIS_ERRORS.labels(component).inc()
        raise StoreUnavailable(f"redis {operation} failed: {type(exc).__name__}") from exc
    except RuntimeError as exc:
        if "handler is closed" not in str(exc):
            raise  # any other RuntimeError is a bug, not an outage
        REDIS_ERRORS.labels(component).inc()
        raise StoreUnavailable(f"redis {operation} failed: closed transport") from exc


class RedisAdapter:
    """Base of the Redis-backed adapters: one client, one key namespace, ping and close.

    Args:
        client: An asyncio Redis client (``create_redis_client``, or one injected by tests).
        prefix: Namespace for every key, e.g. ``"keyturn:"``; tests use a unique one.
        owns_client: Close ``client`` in ``close()``. ``from_url`` sets it; an injected
            client shared with other adapters stays open.
    """

    # The ``component`` label of keyturn_redis_errors_total; each adapter names itself.
    component = "redis"

    def __init__(self, client: Redis, *, prefix: str, owns_client: bool = False) -> None:
        self._client = client
        # The hot reads and scripts go through it (issue 18): concurrent requests share
        # one pipeline instead of a round trip each.
        self._batch = CommandBatcher(client)
        self._prefix = prefix
        self._owns_client = owns_client

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> Self:
        """Build an adapter with its own client; nothing connects until the first call.

        Args:
            url: Redis URL.
            prefix: Key namespace.
            socket_timeout: Seconds to wait for one command's answer.
            connect_timeout: Seconds to wait for a connection.
        """
        client = create_redis_client(
            url, socket_timeout=socket_timeout, connect_timeout=connect_timeout
        )
        return cls(client, prefix=prefix, owns_client=True)

    def _namespaced(self, name: str) -> str:
        return f"{self._prefix}{name}"

    async def ping(self) -> None:
        """Return when Redis answers (readiness); else raise ``StoreUnavailable``."""
        with store_errors("ping", self.component):
            await self._client.ping()

    async def close(self) -> None:
        """Close the client if this adapter built it."""
        if self._owns_client:
            await self._client.aclose()
