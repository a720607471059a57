"""What ``/metrics`` reads when it is scraped: the database pool, the outbox backlog, the
audit log's unsealed tail, the readiness checks and the active signing keys' ages.

The composition root attaches this process's sources (``attach``) when it starts and
detaches them on shutdown; ``render_metrics`` refreshes the asynchronous readings (each
cached a few seconds and bounded by a timeout, so a scrape storm cannot hammer the
database) and renders the registry. The collectors are registered once, at import.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple, Protocol

import structlog
from prometheus_client import Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from keyturn.observability.metrics import REGISTRY, SCRAPE_SOURCE_ERRORS

__all__ = [
    "AuditTail",
    "CachedReading",
    "PoolStats",
    "attach",
    "audit_reading",
    "outbox_reading",
    "readiness_reading",
    "record_active_signing_key",
    "render_metrics",
]

log = structlog.get_logger(__name__)

# A scrape every 15 s (Prometheus' default) sees at most one read per source per 5 s.
DEFAULT_CACHE_SECONDS = 5.0
# Bounded below the usual scrape timeout (10 s) so a slow database still gets an answer.
DEFAULT_READ_TIMEOUT = 2.0
OUTBOX_STATUSES = ("pending", "sending", "dead")

OUTBOX_MESSAGES = Gauge(
    "keyturn_outbox_messages",
    "Outbox messages not yet delivered, by status (pending, sending, dead).",
    ["status"],
    registry=REGISTRY,
)
OUTBOX_OLDEST_PENDING_AGE = Gauge(
    "keyturn_outbox_oldest_pending_age_seconds",
    "Age of the oldest mail still waiting to be sent (pending or sending); 0 when none.",
    registry=REGISTRY,
)
AUDIT_UNSEALED = Gauge(
    "keyturn_audit_unsealed_events",
    "Audit events inserted but not yet chained by the sealer.",
    registry=REGISTRY,
)
AUDIT_SEAL_LAG = Gauge(
    "keyturn_audit_seal_lag_seconds",
    "Age of the oldest audit event the sealer has not chained yet; 0 when none.",
    registry=REGISTRY,
)
READINESS = Gauge(
    "keyturn_readiness_check_up",
    "1 when the readiness check (database, redis) answered at the last scrape, else 0.",
    ["check"],
    registry=REGISTRY,
)


class PoolStats(NamedTuple):
    """A connection pool as read at scrape time."""

    size: int
    checked_out: int
    overflow: int


OutboxBacklog = tuple[Mapping[str, int], datetime | None]


class CachedReading:
    """An asynchronous read refreshed at most every ``cache_seconds``, within ``timeout``.

    Args:
        name: The ``source`` label of ``keyturn_metrics_source_errors_total``.
        read: Reads and sets the gauges it feeds.
        cache_seconds: Minimum time between two reads.
        timeout: A read taking longer is abandoned (and counted as an error).
        clock: Monotonic clock (injectable for tests).
    """

    def __init__(
        self,
        name: str,
        read: Callable[[], Awaitable[None]],
        *,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        timeout: float = DEFAULT_READ_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._read = read
        self._cache_seconds = cache_seconds
        self._timeout = timeout
        self._clock = clock
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Reads unless a read is fresh; a failure is logged and counted, never raised."""
        if self._clock() - self._read_at < self._cache_seconds:
            return
        async with self._lock:
            # Concurrent scrapes wait for the one read in progress instead of repeating it.
            if self._clock() - self._read_at < self._cache_seconds:
                return
            try:
                await asyncio.wait_for(self._read(), self._timeout)
            except Exception as exc:  # a metrics read must never fail the scrape
                SCRAPE_SOURCE_ERRORS.labels(self.name).inc()
                log.warning("metrics_source_failed", source=self.name, error=type(exc).__name__)
            self._read_at = self._clock()


def outbox_reading(read: Callable[[], Awaitable[OutboxBacklog]]) -> CachedReading:
    """The outbox gauges from ``read``: counts per status and the oldest pending mail."""

    async def refresh() -> None:
        counts, oldest = await read()
        for status in OUTBOX_STATUSES:
            OUTBOX_MESSAGES.labels(status).set(counts.get(status, 0))
        age = 0.0 if oldest is None else (datetime.now(UTC) - oldest).total_seconds()
        OUTBOX_OLDEST_PENDING_AGE.set(max(age, 0.0))

    return CachedReading("outbox", refresh)


class AuditTail(Protocol):
    """The unsealed audit tail (``keyturn.domain.AuditBacklog`` fits)."""

    @property
    def unsealed(self) -> int: ...
    @property
    def oldest_at(self) -> datetime | None: ...


def audit_reading(read: Callable[[], Awaitable[AuditTail]]) -> CachedReading:
    """The seal lag gauges from ``read``: how many rows wait and the oldest one's age."""

    async def refresh() -> None:
        tail = await read()
        AUDIT_UNSEALED.set(tail.unsealed)
        oldest = tail.oldest_at
        age = 0.0 if oldest is None else (datetime.now(UTC) - oldest).total_seconds()
        AUDIT_SEAL_LAG.set(max(age, 0.0))

    return CachedReading("audit", refresh)


def readiness_reading(
    checks: Mapping[str, Callable[[], Awaitable[None]]], *, timeout: float = 1.0
) -> CachedReading:
    """``keyturn_readiness_check_up`` from the same checks ``/readyz`` runs."""

    async def one(name: str, check: Callable[[], Awaitable[None]]) -> None:
        try:
            await asyncio.wait_for(check(), timeout)
            READINESS.labels(name).set(1)
        except Exception:  # any failure means "not ready", as for /readyz
            READINESS.labels(name).set(0)

    async def refresh() -> None:
        await asyncio.gather(*(one(name, check) for name, check in checks.items()))

    return CachedReading("readiness", refresh)


@dataclass
class _Sources:
    pools: list[Callable[[], PoolStats | None]] = field(default_factory=list)
    readings: list[CachedReading] = field(default_factory=list)
    # Algorithm -> when its active signing key began to sign (epoch seconds).
    active_keys: dict[str, float] = field(default_factory=dict)


_SOURCES = _Sources()


def attach(
    *, pool: Callable[[], PoolStats | None] | None = None, readings: Iterable[CachedReading] = ()
) -> Callable[[], None]:
    """Adds this process's sources; returns the function that removes them again."""
    added = list(readings)
    _SOURCES.readings.extend(added)
    if pool is not None:
        _SOURCES.pools.append(pool)

    def detach() -> None:
        for reading in added:
            _SOURCES.readings.remove(reading)
        if pool is not None:
            _SOURCES.pools.remove(pool)

    return detach


def record_active_signing_key(alg: str, activated_at: datetime) -> None:
    """Notes when ``alg``'s active key began to sign (the key cache calls this on reload)."""
    _SOURCES.active_keys[alg] = activated_at.timestamp()


async def render_metrics() -> bytes:
    """Refreshes the scrape-time readings, then renders the registry (text format)."""
    await asyncio.gather(*(reading.refresh() for reading in list(_SOURCES.readings)))
    return generate_latest(REGISTRY)


class _PoolCollector(Collector):
    """The database pools attached to this process, read at scrape time (summed)."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        stats = [read() for read in _SOURCES.pools]
        known = [entry for entry in stats if entry is not None]
        families = (
            ("keyturn_db_pool_size", "Connections the database pool keeps.", "size"),
            ("keyturn_db_pool_checked_out", "Pool connections in use.", "checked_out"),
            ("keyturn_db_pool_overflow", "Connections open beyond the pool size.", "overflow"),
        )
        for name, documentation, attribute in families:
            family = GaugeMetricFamily(name, documentation)
            if known:
                family.add_metric([], sum(getattr(entry, attribute) for entry in known))
            yield family


class _SigningKeyCollector(Collector):
    """Each algorithm's active signing key age, computed at scrape time."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "keyturn_signing_key_age_seconds",
            "Seconds since the active signing key of each algorithm began to sign.",
            labels=["alg"],
        )
        now = time.time()
        for alg, since in sorted(_SOURCES.active_keys.items()):
            family.add_metric([alg], max(now - since, 0.0))
        yield family


REGISTRY.register(_PoolCollector())
REGISTRY.register(_SigningKeyCollector())
