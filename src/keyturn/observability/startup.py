"""One process's observability, started and stopped by the app's lifespan.

The composition root hands in plain values and callables (it owns the settings, the
engine and the database reads); this module imports no layer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from keyturn.observability.listener import MetricsListener
from keyturn.observability.listener_settings import ListenerSettings, metrics_address
from keyturn.observability.scrape import (
    AuditTail,
    OutboxBacklog,
    PoolStats,
    attach,
    audit_reading,
    outbox_reading,
    readiness_reading,
)

__all__ = ["pool_reader", "start_observability"]


def pool_reader(pool: Any) -> Callable[[], PoolStats | None]:
    """Reads a SQLAlchemy ``QueuePool`` at scrape time; pools without a size (SQLite's
    ``StaticPool``/``NullPool``) read as ``None`` (no sample)."""

    def read() -> PoolStats | None:
        if not all(hasattr(pool, name) for name in ("size", "checkedout", "overflow")):
            return None
        return PoolStats(int(pool.size()), int(pool.checkedout()), int(pool.overflow()))

    return read


async def start_observability(
    *,
    listener: ListenerSettings,
    pool: Callable[[], PoolStats | None],
    outbox_backlog: Callable[[], Awaitable[OutboxBacklog]],
    audit_backlog: Callable[[], Awaitable[AuditTail]],
    readiness_checks: Mapping[str, Callable[[], Awaitable[None]]],
    storage_tracing: Callable[[], Callable[[], None]] | None = None,
) -> Callable[[], Awaitable[None]]:
    """Attaches the scrape-time sources, starts the metrics listener (when ``listener``
    names one) and the storage tracing (when asked); returns the coroutine that undoes it.

    Raises:
        MetricsListenerError: The metrics address cannot be bound.
    """
    detach = attach(
        pool=pool,
        readings=(
            outbox_reading(outbox_backlog),
            audit_reading(audit_backlog),
            readiness_reading(readiness_checks),
        ),
    )
    address = metrics_address(listener)
    server = None if address is None else MetricsListener(*address)
    try:
        if server is not None:
            await server.start()
        stop_tracing = storage_tracing() if storage_tracing is not None else None
    except BaseException:
        detach()
        raise

    async def stop() -> None:
        if server is not None:
            await server.stop()
        if stop_tracing is not None:
            stop_tracing()
        detach()

    return stop
