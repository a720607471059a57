"""Prometheus metrics shared by the edge and the services (one registry per process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
