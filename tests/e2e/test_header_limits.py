"""Request headers are capped in size and in read time when Keyturn serves directly
(issue 12 finding 9), against a real ``keyturn serve`` (uvicorn + httptools) over raw sockets.

ASVS v5.0.0-15.2.2 (defences against loss of availability through resource-demanding
input: what a client may make the server buffer, and for how long). The attack: an 8 MB
header was accepted, and 20 unfinished 5 MB headers grew the process by 78 MB and stayed
open.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from e2e.conftest import StartServer
from e2e.processes import LOW_ARGON2, Server

pytestmark = pytest.mark.slow

MAX_HEADER_BYTES = 16384
# Short on purpose, so the test waits briefly; the default is 10 s.
HEADER_TIMEOUT = "1"
# A bound on how long a socket read may block before the test fails; never asserted.
READ_BOUND = 30.0


@pytest.fixture
def guarded(start_server: StartServer) -> Server:
    return start_server(
        {
            **LOW_ARGON2,
            "KEYTURN_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
            "KEYTURN_HEADER_TIMEOUT": HEADER_TIMEOUT,
        }
    )


@pytest.fixture
def connect(guarded: Server) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", guarded.port), timeout=READ_BOUND)
    try:
        yield sock
    finally:
        sock.close()


def _send(sock: socket.socket, data: bytes) -> bool:
    """Sends ``data``; False when the server already closed the connection under us."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded by READ_BOUND)."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def _read_response(sock: socket.socket) -> bytes:
    """One response (headers and a Content-Length body) from a kept-alive connection."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _request(path: str = "/healthz", extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + b"\r\n"


def test_asvs_15_2_2_oversize_header_is_refused_with_431(connect: socket.socket) -> None:
    big = b"X-Big: " + b"a" * (8 * 1024 * 1024) + b"\r\n"
    _send(connect, _request(extra=big))
    answer = _read_until_closed(connect)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_asvs_15_2_2_unfinished_oversize_header_is_cut_off(connect: socket.socket) -> None:
    """The header never ends: the server stops reading at the cap, answers and closes."""
    start = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
    _send(connect, start)
    for _ in range(64):  # up to 4 MB, far past the cap, never the end of the header
        if not _send(connect, b"a" * 65536):
            break
    answer = _read_until_closed(connect)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_asvs_15_2_2_many_headers_summing_past_the_cap_are_refused(
    connect: socket.socket,
) -> None:
    """The cap is on all header bytes together, not per line."""
    lines = b"".join(b"X-H%d: %s\r\n" % (n, b"b" * 1000) for n in range(40))
    _send(connect, _request(extra=lines))
    assert _read_until_closed(connect).startswith(b"HTTP/1.1 431 ")


def test_asvs_15_2_2_slow_header_is_closed_after_the_timeout(connect: socket.socket) -> None:
    _send(connect, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    answer = _read_until_closed(connect)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer[:200]


def test_asvs_15_2_2_idle_connection_without_a_request_is_closed(
    connect: socket.socket,
) -> None:
    assert _read_until_closed(connect) == b""


def test_asvs_15_2_2_normal_requests_are_unaffected(connect: socket.socket) -> None:
    """Headers near the cap pass; keep-alive outlives the header timeout between requests;
    a body larger than the header cap sent in the same packet is no header."""
    near = b"X-Near: " + b"c" * (MAX_HEADER_BYTES - 1024) + b"\r\n"
    assert _send(connect, _request(extra=near))
    assert _read_response(connect).startswith(b"HTTP/1.1 200 ")
    # Longer than the header timeout between two requests on one connection (keep-alive).
    connect.settimeout(float(HEADER_TIMEOUT) * 1.5)
    with pytest.raises(TimeoutError):
        connect.recv(1)
    connect.settimeout(READ_BOUND)
    assert _send(connect, _request())
    assert _read_response(connect).startswith(b"HTTP/1.1 200 ")
    body = b'{"email": "someone@example.com", "password": "' + b"p" * 40000 + b'"}'
    post = (
        b"POST /v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    assert _send(connect, post + body)
    answer = _read_response(connect)
    assert not answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert answer.startswith((b"HTTP/1.1 401 ", b"HTTP/1.1 422 ")), answer[:200]
