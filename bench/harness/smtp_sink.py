"""A local SMTP server for the soak (aiosmtpd on 127.0.0.1) that counts what it accepts.

Only a count is kept (a 30-minute soak delivers thousands of mails): the soak checks that
the outbox drains, not what the mails say (tests/ do that).
"""

from __future__ import annotations

import threading
from typing import Any

from aiosmtpd.controller import Controller

from bench.harness.servers import free_port


class _Counter:
    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, _server: Any, _session: Any, _envelope: Any) -> str:  # noqa: N802
        with self._lock:
            self.count += 1
        return "250 Message accepted for delivery"


class SmtpSink:
    """``with SmtpSink() as sink: ... sink.url ... sink.received``"""

    def __init__(self) -> None:
        self.port = free_port()
        self._handler = _Counter()
        self._controller = Controller(self._handler, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def received(self) -> int:
        return self._handler.count

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._controller.stop()
