"""A stop at SIGTERM that resets no connection the kernel has already accepted.

uvicorn closes its listening socket when it starts to shut down. A connection whose TCP
handshake the kernel had completed, but which the event loop had not yet taken from the
accept queue, is reset by that close. Under load the queue is seldom empty: a balancer that
opened such a connection has usually written its request already, and it never replays a
POST (the lost login of ``tests/e2e/test_cluster_faults.py``; a probe that opens fresh
connections in 16 threads lost 10-15 requests per SIGTERM). So before uvicorn closes the
listener, ``DrainingServer``:

1. refuses new handshakes: a classic BPF socket filter on the listener drops every SYN that
   carries no ACK (the first packet of a handshake), and nothing else. The client sends its
   SYN again after about a second (RFC 6298 section 2.1, RFC 9293 section 3.8.1), meets the
   closed port then (RST) and its balancer picks another replica, as it would have;
2. lets the event loop accept what is queued, until the queue stays empty: Linux reports a
   listening socket's queue length in ``TCP_INFO`` (``tcpi_unacked``). Handshakes already
   under way complete within one round trip, so the queue must stay empty for
   ``QUIET_SECONDS`` first.

Then uvicorn's own shutdown runs: those connections are in its hands, and it finishes them
as it finishes every other (``cli/http_guard.py`` for the kept-alive ones).

Linux only, and only for one worker process: with ``--workers`` the processes share one
listening socket, and a filter on it would refuse connections for the workers that stay.
Where the filter cannot be set the stop is uvicorn's, unchanged.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import structlog
import uvicorn

__all__ = ["DrainingServer", "drain_listeners", "queued_connections", "refuse_new_handshakes"]

log = structlog.get_logger(__name__)

QUIET_SECONDS = 0.05
LIMIT_SECONDS = 2.0
_POLL_SECONDS = 0.005

SO_ATTACH_FILTER = 26  # linux/asm-generic/socket.h (the socket module does not name it)
_TCP_INFO_SIZE = 104
_TCPI_UNACKED = 24  # struct tcp_info: 8 one-byte fields, rto, ato, snd_mss, rcv_mss, unacked

# A socket filter on TCP sees the TCP header at offset 0; byte 13 holds the flags.
# (code, jt, jf, k) per linux/filter.h.
_SYN, _ACK = 0x02, 0x10
_DROP_FIRST_SYN = (
    (0x30, 0, 0, 13),  # BPF_LD | BPF_B | BPF_ABS: A = flags
    (0x54, 0, 0, _SYN | _ACK),  # BPF_ALU | BPF_AND | BPF_K: A &= SYN | ACK
    (0x15, 0, 1, _SYN),  # BPF_JMP | BPF_JEQ | BPF_K: a SYN alone? next : skip one
    (0x06, 0, 0, 0),  # BPF_RET | BPF_K: drop
    (0x06, 0, 0, 0xFFFFFFFF),  # BPF_RET | BPF_K: keep the whole packet
)


def refuse_new_handshakes(listener: socket.socket) -> None:
    """Drops the SYNs that open a connection to ``listener``; everything else passes.

    Raises:
        OSError: the platform has no socket filters (not Linux).
    """
    program = ctypes.create_string_buffer(
        b"".join(struct.pack("HBBI", *instruction) for instruction in _DROP_FIRST_SYN)
    )
    # struct sock_fprog {unsigned short len; struct sock_filter *filter;}
    fprog = struct.pack("HL", len(_DROP_FIRST_SYN), ctypes.addressof(program))
    listener.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def queued_connections(listener: socket.socket) -> int:
    """How many accepted handshakes wait in ``listener``'s accept queue (Linux)."""
    info = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    count: int = struct.unpack_from("I", info, _TCPI_UNACKED)[0]
    return count


async def drain_listeners(
    listeners: Iterable[Any], *, quiet: float = QUIET_SECONDS, limit: float = LIMIT_SECONDS
) -> int:
    """Refuses new handshakes, then waits until the event loop has taken the queued ones.

    Args:
        listeners: The listening sockets (anything with ``fileno()``); they stay open.
        quiet: Seconds the queues must stay empty (handshakes under way complete).
        limit: Seconds to wait at most (a stuck loop does not hold the stop).

    Returns:
        How many listeners were drained (0 where no filter could be set).
    """
    held: list[socket.socket] = []
    for listener in listeners:
        try:
            # A duplicate descriptor of the same socket: options set on it are the listener's.
            sock = socket.socket(fileno=os.dup(listener.fileno()))
        except OSError as exc:  # out of descriptors: this stop is uvicorn's, unchanged
            log.warning("listener_drain_unavailable", error=str(exc))
            continue
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            sock.close()  # a Unix socket has no handshake to refuse
            continue
        try:
            refuse_new_handshakes(sock)
        except OSError as exc:
            log.warning("listener_drain_unavailable", error=str(exc))
            sock.close()
            continue
        held.append(sock)
    try:
        await _until_empty(held, quiet=quiet, limit=limit)
    finally:
        for sock in held:
            sock.close()
    return len(held)


async def _until_empty(listeners: Sequence[socket.socket], *, quiet: float, limit: float) -> None:
    if not listeners:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    empty_since = loop.time()
    while loop.time() < deadline:
        try:
            queued = any(queued_connections(sock) for sock in listeners)
        except OSError as exc:
            # No queue length to read (a sandboxed kernel): stop as uvicorn would.
            log.warning("listener_drain_unavailable", error=str(exc))
            return
        if queued:
            empty_since = loop.time()
        elif loop.time() - empty_since >= quiet:
            return
        await asyncio.sleep(_POLL_SECONDS)
    log.warning("listener_drain_incomplete", seconds=limit)


class DrainingServer(uvicorn.Server):
    """uvicorn's server; its shutdown first drains the accept queue (module docstring)."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await drain_listeners(sock for server in self.servers for sock in server.sockets)
        await super().shutdown(sockets=sockets)
