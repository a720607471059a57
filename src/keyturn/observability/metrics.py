"""Prometheus metrics shared by the edge and the services (one registry per process)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

REGISTRY = CollectorRegistry(auto_describe=True)

REQUEST_LATENCY = Histogram(
    "keyturn_http_request_duration_seconds",
    "HTTP request latency by route template and method.",
    ["route", "method", "status"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
LOGINS = Counter(
    "keyturn_logins_total", "Password logins by outcome.", ["outcome"], registry=REGISTRY
)
REFRESHES = Counter(
    "keyturn_refreshes_total", "Refresh-token exchanges by outcome.", ["outcome"], registry=REGISTRY
)
REUSE_DETECTIONS = Counter(
    "keyturn_refresh_reuse_detections_total",
    "Refresh tokens presented again outside the grace rule (family revoked).",
    registry=REGISTRY,
)
HASH_POOL_IN_FLIGHT = Gauge(
    "keyturn_hash_pool_in_flight", "Password hashes running or queued.", registry=REGISTRY
)
HASH_POOL_CAPACITY = Gauge(
    "keyturn_hash_pool_capacity", "Hash pool workers plus queue slots.", registry=REGISTRY
)
REVOCATION_STORE_ERRORS = Counter(
    "keyturn_revocation_store_errors_total",
    "Shared-store failures answered from the database instead.",
    ["operation"],
    registry=REGISTRY,
)
OUTBOX_DELIVERIES = Counter(
    "keyturn_outbox_deliveries_total",
    "Outbox delivery attempts by result (sent, retry, dead; resolved: an account request done).",
    ["result"],
    registry=REGISTRY,
)
RATE_LIMIT_FALLBACKS = Counter(
    "keyturn_rate_limit_fallbacks_total",
    "Rate-limit checks answered per process because the shared store failed.",
    ["operation"],
    registry=REGISTRY,
)
# Every Redis failure, whichever adapter met it (revocation, rate_limit, ceremonies): one
# family, so one alert watches them all; the per-feature fallback counters above stay.
REDIS_ERRORS = Counter(
    "keyturn_redis_errors_total",
    "Redis commands that failed (driver, socket or timeout error), by adapter.",
    ["component"],
    registry=REGISTRY,
)
SCRAPE_SOURCE_ERRORS = Counter(
    "keyturn_metrics_source_errors_total",
    "Scrape-time reads (outbox backlog, readiness) that failed or timed out.",
    ["source"],
    registry=REGISTRY,
)

# Process and runtime collectors on our registry (the default registry is not served).
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# The methods a client may send are unbounded (any token is a valid method): the request
# histogram labels the ones we serve and folds the rest into one value.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """The ``method`` label for ``method``: itself when standard, else ``"other"``."""
    return method if method in _KNOWN_METHODS else "other"


# (route, method label, status) -> its histogram child: labels() takes a lock and builds its
# key on every call, and a label set's child never changes. Bounded like the labels are.
_LATENCY_CHILDREN: dict[tuple[str, str, int], Histogram] = {}


def request_latency(route: str, method: str, status: int) -> Histogram:
    """The latency histogram child for one request (``method`` as the client sent it)."""
    key = (route, method_label(method), status)
    child = _LATENCY_CHILDREN.get(key)
    if child is None:
        child = _LATENCY_CHILDREN[key] = REQUEST_LATENCY.labels(key[0], key[1], str(status))
    return child
