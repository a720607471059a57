"""Fixtures that start real ``keyturn serve`` processes.

``start_server(extra_env)`` starts one (waiting for ``/healthz``) and returns a
:class:`e2e.processes.Server`; every server a test started is stopped on teardown with
SIGTERM, then killed after a bound.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from e2e.processes import Server, keyturn_env, spawn_server, wait_healthy

StartServer = Callable[..., Server]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    started: list[Server] = []

    def start(
        extra_env: Mapping[str, str] | None = None,
        *,
        data_dir: Path | None = None,
        name: str = "serve",
        wait: bool = True,
    ) -> Server:
        directory = data_dir or tmp_path / "data"
        server = spawn_server(tmp_path, keyturn_env(directory, extra_env), name=name)
        started.append(server)
        if wait:
            wait_healthy(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.stop()


@pytest.fixture
def server(start_server: StartServer) -> Server:
    """``keyturn serve`` with default settings (only the data dir and port are set)."""
    return start_server()
