"""``/metrics`` on its own listener (KEYTURN_METRICS_HOST/PORT): served there, 404 on the
public port, stopped on shutdown, and a bind failure is a clear start error."""

from __future__ import annotations

import socket
from collections.abc import Callable

import httpx
import pytest

from helpers import lifespan
from keyturn.app import create_app
from keyturn.config import Settings
from keyturn.observability.listener import MetricsListenerError
from net import free_port

pytestmark = pytest.mark.anyio

SettingsFactory = Callable[..., Settings]


async def test_metrics_on_their_own_listener_and_not_on_the_public_port(
    make_settings: SettingsFactory, scrape
) -> None:
    port = free_port()
    app = create_app(make_settings(metrics_host="127.0.0.1", metrics_port=port))
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as public:
            answer = await public.get("/metrics")
            assert answer.status_code == 404
            assert (await public.get("/healthz")).status_code == 200
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as metrics:
            exposition = await scrape(metrics)
            assert "keyturn_http_request_duration_seconds" in exposition.families
            # The public port's 404 above was measured and is visible here.
            assert (
                exposition.value(
                    "keyturn_http_request_duration_seconds_count",
                    route="unmatched",
                    method="GET",
                    status="404",
                )
                >= 1
            )
            assert (await metrics.get("/other")).status_code == 404
            assert (await metrics.head("/metrics")).status_code == 200
    # Stopped with the app: nothing listens on the port any more.
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as metrics:
            await metrics.get("/metrics")


async def test_metrics_on_the_api_port_when_no_listener_is_configured(
    client: httpx.AsyncClient, scrape
) -> None:
    exposition = await scrape(client)
    assert "keyturn_logins" in exposition.families


async def test_a_metrics_port_in_use_stops_the_start_with_a_clear_error(
    make_settings: SettingsFactory,
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = create_app(make_settings(metrics_host="127.0.0.1", metrics_port=port))
        with pytest.raises(MetricsListenerError) as raised:
            async with lifespan(app):
                pass  # pragma: no cover (the start must fail)
    message = str(raised.value)
    assert f"127.0.0.1:{port}" in message
    assert "KEYTURN_METRICS_PORT" in message
