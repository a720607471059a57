"""OpenTelemetry tracing (``KEYTURN_OTEL_ENABLED=true``, the ``keyturn[otel]`` extra).

Imported only when tracing is on: the packages are an optional extra. Spans go to the
global tracer provider when one is already configured (``opentelemetry-instrument``, a
test's in-memory exporter); otherwise to an OTLP exporter that the standard ``OTEL_*``
variables configure (endpoint, headers, service name through the resource).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["MISSING_EXTRA", "TracingUnavailable", "install_tracing", "trace_storage"]

MISSING_EXTRA = (
    "KEYTURN_OTEL_ENABLED=true needs the OpenTelemetry packages: pip install 'keyturn[otel]'"
)
# Never recorded, even when an operator asks for request headers in spans
# (OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST): credentials.
SANITIZED_HEADERS = ["authorization", "cookie", "set-cookie", "x-api-key", "proxy-authorization"]
# Probes and scrapes every few seconds would drown the traces that matter.
EXCLUDED_URLS = "/healthz,/readyz,/metrics"
# Span attributes that may carry the request's query string (old and stable semconv):
# mail links put one-time tokens there.
_URL_ATTRIBUTES = ("http.url", "http.target", "url.full")


class TracingUnavailable(RuntimeError):
    """Tracing is enabled but the ``otel`` extra is not installed."""


def _scrub_query(span: Any, scope: dict[str, Any]) -> None:
    """Server request hook: drops the query string from the span's URL attributes."""
    attributes = getattr(span, "attributes", None) or {}
    for key in _URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str) and "?" in value:
            span.set_attribute(key, value.split("?", 1)[0])
    if "url.query" in attributes:
        span.set_attribute("url.query", "[redacted]")


def _provider() -> Any:
    """The global tracer provider, or a new OTLP-exporting one made global."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()  # resource from OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def install_tracing(app: Any) -> None:
    """Traces ``app``'s requests: a server span per request, named by its route template.

    Raises:
        TracingUnavailable: The ``otel`` extra is not installed (checked at app creation,
            so a missing extra stops the start instead of silently tracing nothing).
    """
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    except ImportError as exc:
        raise TracingUnavailable(MISSING_EXTRA) from exc
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_provider(),
        server_request_hook=_scrub_query,
        excluded_urls=EXCLUDED_URLS,
        http_capture_headers_sanitize_fields=SANITIZED_HEADERS,
        # The ASGI receive/send sub-spans add nothing an operator reads.
        exclude_spans=["receive", "send"],
    )


def trace_storage(sync_engine: Any) -> Callable[[], None]:
    """Child spans for the statements of ``sync_engine`` (an ``AsyncEngine.sync_engine``)
    and for every Redis command; returns the function that stops both.

    The statement text is recorded with its placeholders, never the bound parameters.
    Both instrumentors are process-wide singletons: one engine per process (the lifespan
    starts and stops them around it).
    """
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    provider = _provider()
    database, redis = SQLAlchemyInstrumentor(), RedisInstrumentor()
    for instrumentor in (database, redis):
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
    # 0.66b2 (the newest) still declares "sqlalchemy < 2.1" while its engine event hooks
    # work on our 2.1 (tests/integration/observability/test_tracing.py proves the spans).
    database.instrument(
        engine=sync_engine,
        tracer_provider=provider,
        enable_commenter=False,
        skip_dep_check=True,
    )
    redis.instrument(tracer_provider=provider)

    def stop() -> None:
        database.uninstrument()
        redis.uninstrument()

    return stop
