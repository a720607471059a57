"""OpenTelemetry tracing (KEYTURN_OTEL_ENABLED): a server span per request named by its
route template, child database spans, and no credential in any span attribute."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import PASSWORD, bearer, new_email, running_app
from keyturn.app import create_app
from keyturn.config import Settings
from keyturn.observability.tracing import MISSING_EXTRA, TracingUnavailable

pytestmark = pytest.mark.anyio

SettingsFactory = Callable[..., Settings]
ROOT = Path(__file__).resolve().parents[3]

trace = pytest.importorskip("opentelemetry.trace", reason="the otel extra is not installed")
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind  # noqa: E402

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    """The process's tracer provider, exporting to memory (set once: OpenTelemetry allows
    one global provider per process, and Keyturn uses the one already set)."""
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    else:
        current.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    return _EXPORTER


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    exporter.clear()
    yield exporter
    exporter.clear()


def _ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> Iterator[ReadableSpan]:
    parent = span.parent
    while parent is not None and parent.span_id in by_id:
        found = by_id[parent.span_id]
        yield found
        parent = found.parent


async def test_a_login_is_a_server_span_with_database_children_and_no_secrets(
    make_settings: SettingsFactory, spans: InMemorySpanExporter
) -> None:
    email = new_email()
    async with running_app(make_settings(otel_enabled=True)) as client:
        signup = await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
        assert signup.status_code == 202
        spans.clear()
        login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200
        tokens = login.json()
        me = await client.get("/v1/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200
        query_token = "query-secret-0123456789"
        await client.get(f"/ui/verify?token={query_token}")
    finished = list(spans.get_finished_spans())
    by_id = {span.context.span_id: span for span in finished}
    servers = [span for span in finished if span.kind is SpanKind.SERVER]
    login_span = next(span for span in servers if span.name == "POST /v1/auth/login")
    assert any(span.name == "GET /v1/me" for span in servers)
    database = [
        span
        for span in finished
        if span.instrumentation_scope is not None
        and "sqlalchemy" in span.instrumentation_scope.name
        and login_span in _ancestors(span, by_id)
    ]
    assert database, "the login's statements are child spans of its server span"
    secrets = [PASSWORD, tokens["access_token"], tokens["refresh_token"], query_token, "Bearer"]
    for span in finished:
        for key, value in (span.attributes or {}).items():
            text = str(value)
            leaked = [secret for secret in secrets if secret in text]
            assert not leaked, f"{span.name}: attribute {key} carries a credential"


def test_tracing_without_the_extra_is_a_clear_start_error(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes the import fail, as when the package is not installed.
    monkeypatch.setitem(sys.modules, "opentelemetry.instrumentation.fastapi", None)
    with pytest.raises(TracingUnavailable, match=r"pip install 'keyturn\[otel\]'"):
        create_app(make_settings(otel_enabled=True))
    assert "KEYTURN_OTEL_ENABLED" in MISSING_EXTRA


IMPORT_CHECK = """
import asyncio, sys, tempfile
from asgi_lifespan import LifespanManager
from keyturn.app import create_app
from keyturn.config import load_settings

async def main():
    data = tempfile.mkdtemp()
    settings = load_settings(data_dir=data, argon2_memory_kib=1024, argon2_time_cost=1)
    from keyturn.db.migrate import upgrade
    await upgrade(settings.database_url)
    async with LifespanManager(create_app(settings), startup_timeout=60):
        pass

asyncio.run(main())
from opentelemetry import trace
ours = sorted(
    name for name in sys.modules
    if name.startswith(("opentelemetry.instrumentation", "opentelemetry.exporter",
                        "opentelemetry.sdk.trace"))
)
print(ours, type(trace.get_tracer_provider()).__name__)
"""


def test_tracing_off_imports_no_tracing_package(tmp_path: Path) -> None:
    """FastAPI itself imports the OpenTelemetry API (and redis the SDK's metrics when it is
    installed); Keyturn with tracing off adds no instrumentation, exporter or trace SDK,
    and sets no tracer provider."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "[] ProxyTracerProvider"
