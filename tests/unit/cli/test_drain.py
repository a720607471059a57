"""The accept-queue drain behind a graceful stop (``cli/drain.py``), on real sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from keyturn.cli import drain
from keyturn.cli.drain import (
    DrainingServer,
    drain_listeners,
    queued_connections,
    refuse_new_handshakes,
)

pytestmark = pytest.mark.anyio

# Long enough for a loopback handshake many times over: a SYN that was not dropped has
# completed into the queue by then.
HANDSHAKE_WAIT = 0.3


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=[(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")], ids=["v4", "v6"])
def listener(request: pytest.FixtureRequest) -> Iterator[socket.socket]:
    family, host = request.param
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(64)
    with sock:
        yield sock


def _connect(listener: socket.socket) -> socket.socket:
    """Starts a handshake without waiting for it (the SYN may be dropped)."""
    client = socket.socket(listener.family, socket.SOCK_STREAM)
    client.setblocking(False)
    assert client.connect_ex(listener.getsockname()[:2]) in (0, 115)  # 115: EINPROGRESS
    return client


def test_the_queue_counts_handshakes_not_yet_accepted(listener: socket.socket) -> None:
    clients = [socket.create_connection(listener.getsockname()[:2]) for _ in range(3)]
    try:
        assert queued_connections(listener) == 3
        accepted, _ = listener.accept()
        accepted.close()
        assert queued_connections(listener) == 2
    finally:
        for client in clients:
            client.close()


async def test_a_filtered_listener_completes_no_new_handshake_but_keeps_its_queue(
    listener: socket.socket,
) -> None:
    before = socket.create_connection(listener.getsockname()[:2])
    before.sendall(b"written before the stop")
    refuse_new_handshakes(listener)
    after = _connect(listener)
    try:
        await asyncio.sleep(HANDSHAKE_WAIT)
        assert queued_connections(listener) == 1  # only the one from before
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.recv(64) == b"written before the stop"
            before.sendall(b" and after")  # an open connection is not filtered
            assert accepted.recv(64) == b" and after"
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        before.close()
        after.close()


async def test_drain_waits_until_the_loop_has_accepted_every_queued_connection(
    listener: socket.socket,
) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def keep(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    # The handshakes complete in the kernel while this task does not yield: the loop has
    # accepted none of them when the drain starts.
    clients = [socket.create_connection(listener.getsockname()[:2]) for _ in range(5)]
    server = await asyncio.start_server(keep, sock=listener)
    try:
        assert queued_connections(listener) == 5
        assert await drain_listeners(server.sockets) == 1
        assert queued_connections(listener) == 0
        assert len(accepted) == 5
        late = _connect(listener)  # refused from now on: it never reaches the server
        await asyncio.sleep(HANDSHAKE_WAIT)
        assert queued_connections(listener) == 0
        assert len(accepted) == 5
        late.close()
    finally:
        server.close()
        for writer in accepted:
            writer.close()
        for client in clients:
            client.close()


async def test_a_unix_listener_is_left_alone(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
        unix.bind(f"{tmp_path}/keyturn.sock")
        unix.listen(1)
        assert await drain_listeners([unix]) == 0


async def test_a_stuck_queue_holds_the_stop_only_up_to_the_limit(
    listener: socket.socket,
) -> None:
    # Nobody accepts: the queue never empties, and the drain gives up at its limit.
    client = socket.create_connection(listener.getsockname()[:2])
    try:
        assert await drain_listeners([listener], quiet=0.01, limit=0.1) == 1
        assert queued_connections(listener) == 1
    finally:
        client.close()


async def test_the_server_drains_before_uvicorn_closes_its_listener(
    listener: socket.socket,
) -> None:
    server: DrainingServer

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                # Stop as soon as started: uvicorn skips its main loop and shuts down.
                server.should_exit = True
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})

    server = DrainingServer(uvicorn.Config(app, log_config=None, lifespan="on"))
    drained: list[int] = []
    real_shutdown = uvicorn.Server.shutdown

    async def observed(self: uvicorn.Server, sockets: Any = None) -> None:
        # uvicorn's own shutdown starts only after the drain refused new handshakes.
        late = _connect(listener)
        await asyncio.sleep(HANDSHAKE_WAIT)
        drained.append(queued_connections(listener))
        late.close()
        await real_shutdown(self, sockets)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(uvicorn.Server, "shutdown", observed)
        await server.serve(sockets=[listener])
    assert drained == [0]


async def test_a_queue_length_that_cannot_be_read_ends_the_drain_not_the_stop(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreadable(_listener: socket.socket) -> int:
        raise OSError("TCP_INFO not supported")

    monkeypatch.setattr(drain, "queued_connections", unreadable)
    assert await drain.drain_listeners([listener]) == 1  # returns; the stop goes on


async def test_a_listener_that_cannot_be_duplicated_is_left_to_uvicorn() -> None:
    class Closed:
        def fileno(self) -> int:
            return -1  # os.dup fails (EBADF), as it would out of descriptors

    assert await drain.drain_listeners([Closed()]) == 0
