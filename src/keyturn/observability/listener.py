"""The separate ``/metrics`` listener (``KEYTURN_METRICS_HOST`` / ``KEYTURN_METRICS_PORT``).

A uvicorn ``Server`` task on the app's own event loop, not prometheus_client's
``start_http_server`` thread: the scrape-time readings (outbox backlog, readiness) are
coroutines on the app's engine and stores, which a thread could only reach by hopping
back onto this loop. The socket is bound here, before uvicorn sees it, so a port in use
is a clear start error (uvicorn would ``sys.exit`` inside the task); signals stay with
the main server, which stops this listener from the app's lifespan on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import structlog
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST

from keyturn.observability.scrape import render_metrics

__all__ = ["MetricsListener", "MetricsListenerError", "metrics_app"]

log = structlog.get_logger(__name__)

Message = MutableMapping[str, Any]
# Generous: binding is immediate; this bounds a start on a machine under heavy load.
STARTUP_TIMEOUT = 30.0


class MetricsListenerError(RuntimeError):
    """The metrics listener could not start (the process must not start either)."""


async def metrics_app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """ASGI app answering ``GET /metrics`` (and ``HEAD``); everything else is a 404."""
    if scope["type"] != "http":
        return  # lifespan is off; nothing else reaches this app
    if scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD"):
        status, body, content_type = 200, await render_metrics(), CONTENT_TYPE_LATEST
    else:
        status, body, content_type = 404, b"not found\n", "text/plain; charset=utf-8"
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves SIGTERM/SIGINT to the process's main server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class MetricsListener:
    """Serves ``metrics_app`` on ``host:port`` until ``stop``.

    Args:
        host: Listen address (``0.0.0.0`` / ``::`` for every interface).
        port: Listen port (0: any free port, for tests).
    """

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = port

    async def start(self) -> None:
        """Binds and starts serving.

        Raises:
            MetricsListenerError: The address cannot be bound (in use, not local, ...).
        """
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        try:
            sock = socket.create_server((self._host, self._port), family=family)
        except OSError as exc:
            raise MetricsListenerError(
                f"cannot listen for metrics on {self._host}:{self._port} "
                f"(KEYTURN_METRICS_HOST/KEYTURN_METRICS_PORT): {exc.strerror or exc}"
            ) from exc
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            metrics_app, lifespan="off", log_config=None, access_log=False, server_header=False
        )
        server = self._server = _QuietServer(config)
        task = self._task = asyncio.create_task(server.serve(sockets=[sock]))
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while not server.started:
                if task.done():
                    sock.close()
                    task.result()  # re-raises what stopped it
                    raise MetricsListenerError("the metrics listener stopped during start")
                await asyncio.sleep(0.01)
        log.info("metrics_listener_started", host=self._host, port=self.port)

    async def stop(self) -> None:
        """Stops accepting, finishes the scrape in progress and closes the socket."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._server = self._task = None
