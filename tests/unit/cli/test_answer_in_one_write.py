"""An answer leaves in one write: status line, header fields and body together
(``cli/http_guard.py``), on uvicorn's own response cycle."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from keyturn.cli.http_guard import _answer_in_one_write

pytestmark = pytest.mark.anyio

START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
BODY = {"type": "http.response.body", "body": b"ok"}
HEADER_BLOCK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class RecordingTransport:
    def __init__(self, events: list[Any]) -> None:
        self.events = events

    def write(self, data: bytes) -> None:
        self.events.append(data)

    def close(self) -> None:
        self.events.append("close")

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


def _cycle(
    events: list[Any], *, method: str = "GET", keep_alive: bool = True, expect: bool = False
) -> RequestResponseCycle:
    transport: Any = RecordingTransport(events)
    cycle = RequestResponseCycle(
        scope={"type": "http", "method": method},  # type: ignore[typeddict-item]
        transport=transport,
        flow=FlowControl(transport),
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=expect,
        keep_alive=keep_alive,
        on_response=lambda: events.append("on_response"),
    )
    _answer_in_one_write(cycle)
    return cycle


async def test_the_header_block_leaves_with_the_body() -> None:
    events: list[Any] = []
    cycle = _cycle(events)
    await cycle.send(START)  # type: ignore[arg-type]
    assert events == []  # held until the body comes
    await cycle.send(BODY)  # type: ignore[arg-type]
    assert events == [HEADER_BLOCK + b"ok", "on_response"]


async def test_a_streamed_body_sends_the_headers_with_its_first_chunk() -> None:
    events: list[Any] = []
    cycle = _cycle(events)
    start = {"type": "http.response.start", "status": 200, "headers": []}
    await cycle.send(start)  # type: ignore[arg-type]
    await cycle.send({"type": "http.response.body", "body": b"a", "more_body": True})
    await cycle.send({"type": "http.response.body", "body": b"b"})
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    assert events == [chunked + b"1\r\na\r\n", b"1\r\nb\r\n0\r\n\r\n", "on_response"]


async def test_a_head_answer_without_body_is_sent_when_it_completes() -> None:
    events: list[Any] = []
    cycle = _cycle(events, method="HEAD")
    await cycle.send(START)  # type: ignore[arg-type]
    await cycle.send(BODY)  # type: ignore[arg-type]
    # uvicorn writes no body for HEAD: the headers leave before the cycle hands over.
    assert events == [HEADER_BLOCK, "on_response"]


async def test_a_closing_connection_gets_the_answer_before_the_close() -> None:
    events: list[Any] = []
    cycle = _cycle(events, method="HEAD", keep_alive=False)
    await cycle.send(START)  # type: ignore[arg-type]
    await cycle.send(BODY)  # type: ignore[arg-type]
    closing = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n"
    assert events == [closing, "close", "on_response"]


async def test_100_continue_is_not_held() -> None:
    events: list[Any] = []
    cycle = _cycle(events, expect=True)
    cycle.more_body = False
    cycle.message_event.set()
    await cycle.receive()
    assert events == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    await cycle.send(START)  # type: ignore[arg-type]
    await cycle.send(BODY)  # type: ignore[arg-type]
    assert events[1:] == [HEADER_BLOCK + b"ok", "on_response"]


async def test_a_finished_cycle_is_freed_without_the_garbage_collector() -> None:
    events: list[Any] = []
    cycle = _cycle(events)
    await cycle.send(START)  # type: ignore[arg-type]
    await cycle.send(BODY)  # type: ignore[arg-type]
    cycle.on_response = lambda: None  # what uvicorn's run_asgi does once the app returned
    freed = weakref.ref(cycle)
    gc.disable()
    try:
        del cycle
        # No reference cycle through the held transport: freed at once, per request.
        assert freed() is None
    finally:
        gc.enable()
