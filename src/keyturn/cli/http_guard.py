"""uvicorn's httptools protocol with a cap on request-header bytes and header read time.

uvicorn bounds neither when it parses with httptools (``h11_max_incomplete_event_size``
is for h11 only): an 8 MB header was accepted, and unfinished multi-megabyte headers held
memory and connections open for ever. Keyturn serves directly in small deployments, so
the guard lives here rather than only in a reverse proxy:

- header bytes: everything a request sends before its header section ends (request line
  and fields, RFC 9112 section 2.1) is counted; past ``max_header_bytes`` the answer is
  ``431 Request Header Fields Too Large`` (RFC 6585 section 5) and the connection closes,
  without reading further;
- header time: a connection must deliver a complete header section within
  ``header_timeout`` seconds of opening or of its request's first byte; otherwise it is
  closed (with ``408 Request Timeout``, RFC 9110 section 15.5.9, when part of a request
  arrived; silently when nothing did, like a browser's unused pre-connect).

Only the header phase pays: once headers are complete, ``data_received`` adds one flag
test per chunk and body bytes go straight to httptools (no per-byte work).

Graceful shutdown: uvicorn closes an idle kept-alive connection the moment SIGTERM is
handled. A request a balancer wrote to it just before, still unread in the socket buffer
while the event loop was busy, is then reset, and a balancer never replays a POST (issue 17:
about one POST lost per SIGTERM under load behind nginx). Here an idle connection instead
lives out the server's keep-alive timeout (uvicorn's ``timeout_keep_alive``, 5 s), exactly
as it would have without the SIGTERM; a request that arrives meanwhile is answered with
``Connection: close``. A balancer whose idle upstream connections time out sooner (nginx
``keepalive_timeout 4s`` in the upstream, as deploy/nginx/keyturn.conf sets) therefore
always closes an idle connection itself before Keyturn does: no close can meet a request in
flight, at shutdown or in normal running.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

_CLOSE_HEADERS = (
    b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\ncache-control: no-store\r\n"
)
# Request line: method SP target SP "HTTP/1.1" CRLF; each field: name ": " value CRLF.
_REQUEST_LINE_OVERHEAD = len(b"  HTTP/1.1\r\n")
_FIELD_OVERHEAD = len(b": \r\n")


def _answer(status: bytes, text: bytes) -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\n"
        + _CLOSE_HEADERS
        + b"content-length: "
        + str(len(text)).encode("ascii")
        + b"\r\n\r\n"
        + text
    )


# What uvicorn writes, unasked for by the app, before a response to ``Expect: 100-continue``.
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
TOO_LARGE = _answer(b"431 Request Header Fields Too Large", b"Request header fields too large.")
TIMED_OUT = _answer(b"408 Request Timeout", b"Request header not received in time.")


class _HeldHeaders:
    """A response cycle's transport that holds the header block until the body comes.

    uvicorn writes the status line and header fields at ``http.response.start`` and the
    body at ``http.response.body``: two sends, two TCP segments, and two wake-ups of the
    client for every answer. Held here, the header block leaves with the first body
    write, or when the response completes or the connection closes without one (HEAD).

    It keeps no reference to its cycle (which holds it as ``transport``): the pair would
    be a reference cycle, freed only by the garbage collector, for every request.
    """

    __slots__ = ("_held", "_passed_headers", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self._passed_headers = False

    def write(self, data: bytes) -> None:
        if not self._passed_headers and data != CONTINUE:
            # A cycle's first write is its header block; only "100 Continue" (written
            # while the request body is read) comes before it, and passes straight on.
            self._passed_headers = True
            self._held = data
            return
        self.flush(data)

    def flush(self, data: bytes = b"") -> None:
        held, self._held = self._held, None
        if held is not None:
            data = held + data
        if data:
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()


def _answer_in_one_write(cycle: RequestResponseCycle) -> None:
    held = _HeldHeaders(cycle.transport)
    cycle.transport = held  # type: ignore[assignment]
    on_response = cycle.on_response

    def flushed_then_on_response() -> None:
        # The response is complete: whatever is still held (a HEAD answer's headers)
        # leaves before the connection may be reused, timed out or closed. (uvicorn
        # replaces ``on_response`` once the app returns, which also drops this closure.)
        held.flush()
        on_response()

    cycle.on_response = flushed_then_on_response


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` plus the header size cap and header read timeout.

    Built by uvicorn for each connection with its own keyword arguments; the two limits
    come through ``functools.partial`` (picklable, so ``--workers`` > 1 works).
    """

    def __init__(
        self, *args: Any, max_header_bytes: int, header_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._max_header_bytes = max_header_bytes
        self._header_timeout = header_timeout
        # True from a connection's start, and from each request's first byte, until that
        # request's header section is complete.
        self._in_headers = True
        self._header_bytes = 0
        self._request_started = False
        self._refused = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._shutting_down = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the answer is out and the connection closing: read nothing more
        super().data_received(data)
        if self._in_headers and not self._refused and self._request_started:
            # The header section is still incomplete, so this chunk (all of it, apart from
            # a pipelined predecessor's tail) went into it; httptools buffers it until the
            # end of the field, so stop before it holds more than the cap.
            self._header_bytes += len(data)
            if self._header_bytes > self._max_header_bytes:
                self._refuse(TOO_LARGE)

    # -- httptools parser callbacks --------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._request_started = True
        self._header_bytes = 0
        if self._header_timer is None:
            # A kept-alive connection: the next request's header clock starts now.
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._request_started = False
        self._cancel_header_timer()
        # The exact size of a header section that ended inside this chunk.
        size = _REQUEST_LINE_OVERHEAD + len(self.parser.get_method()) + len(self.url)
        size += sum(len(name) + len(value) + _FIELD_OVERHEAD for name, value in self.headers)
        if size > self._max_header_bytes:
            self._refuse(TOO_LARGE)
            return
        super().on_headers_complete()
        if self.cycle is not None:
            _answer_in_one_write(self.cycle)
            if self._shutting_down:
                self.cycle.keep_alive = False  # answered with Connection: close, then closed

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    # -- graceful shutdown -----------------------------------------------------------------

    def shutdown(self) -> None:
        """Called by uvicorn on SIGTERM (its listener is closed already); see the module
        docstring: an idle connection closes at its keep-alive timeout, not at once."""
        self._shutting_down = True
        if self.cycle is None or self.cycle.response_complete:
            # The keep-alive timeout the balancer was promised, not less (module docstring).
            self.loop.call_later(self.timeout_keep_alive, self._close_if_idle)
        else:
            self.cycle.keep_alive = False

    def _close_if_idle(self) -> None:
        if self.transport.is_closing() or self._request_started:
            # Closed already, or a request is arriving: its cycle closes the connection
            # after the answer (or the header timer refuses it).
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()

    # -- the guard -------------------------------------------------------------------------

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self._header_timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if not self._in_headers or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request waits while its predecessor is still being answered
            # (uvicorn paused reading): its clock starts once the server reads again.
            self._arm_header_timer()
            return
        if self._request_started:
            self._refuse(TIMED_OUT)
        else:
            # Nothing of a request arrived: nobody to answer (a pre-connect, or a kept-alive
            # connection already covered by uvicorn's own keep-alive timeout).
            self._refused = True
            self.transport.close()

    def _refuse(self, answer: bytes) -> None:
        self._refused = True
        self._cancel_header_timer()
        self.logger.info("request header refused: %s", answer.split(b"\r\n", 1)[0].decode())
        if not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.close()
