"""The ``Mailer`` contract, one suite over every implementation (DESIGN.md section 9.9).

console: ``ConsoleMailer`` printing to a stream; memory: the dev mailbox's
``KeepingMailer`` (an in-memory copy of every mail sent); smtp: ``SmtpMailer`` against a
real aiosmtpd server (tests/smtp_server.py). Each delivers the subject, recipient,
``Message-ID`` and body it was given, keeps the ``Message-ID`` on a resend (the outbox's
idempotency key), logs no body, token or recipient, and, where delivery can fail, raises
``MailDeliveryError`` and delivers nothing. What only one implementation does (MIME shape,
TLS, AUTH, reply codes, stderr) is tested in test_mail.py and test_mail_smtp.py.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import pytest

from keyturn.domain_mail import MailMessage, new_message_id
from keyturn.errors import MailDeliveryError
from keyturn.infra.dev_mailbox import DevMailbox, KeepingMailer
from keyturn.infra.mail import ConsoleMailer, SmtpMailer
from smtp_server import SmtpServer, text_body

# The concrete classes, not the Mailer Protocol: the suite tests behaviour wherever the
# Protocol lives.
AnyMailer = ConsoleMailer | KeepingMailer | SmtpMailer
SENDER = "Keyturn <no-reply@example.com>"
TOKEN = "abc123"
# aiosmtpd, the test's mail server, logs each SMTP command it receives; that is the
# receiving side, not the mailer under test.
SERVER_LOGGER = "mail.log"
_CONSOLE_BLOCK = re.compile(
    r"\n===== keyturn mail \(console mailer, development only\) =====\n"
    r"From: (?P<sender>[^\n]*)\nTo: (?P<to>[^\n]*)\nSubject: (?P<subject>[^\n]*)\n"
    r"Message-ID: (?P<message_id>[^\n]*)\n\n(?P<text>.*?)"
    r"(?:\(HTML alternative: (?P<html_chars>\d+) chars\)\n)?===== end of mail =====\n",
    re.DOTALL,
)


def make_message(*, html: str | None = "<p>Hello</p>") -> MailMessage:
    return MailMessage(
        message_id=new_message_id("example.com"),
        to="alice@example.com",
        subject="Confirm your email address",
        text=f"Hello\nToken: {TOKEN}\n",
        html=html,
    )


@dataclass(frozen=True)
class Delivered:
    """One mail as the receiving side saw it, whatever the implementation."""

    to: str
    subject: str
    message_id: str
    text: str
    has_html: bool


class Harness(Protocol):
    mailer: AnyMailer
    can_fail: bool

    async def delivered(self, count: int) -> list[Delivered]:
        """The mails delivered so far (waiting for ``count`` where delivery is remote)."""
        ...

    def break_delivery(self) -> None:
        """Make every later send fail (the mail server is gone)."""
        ...

    def restore_delivery(self) -> None: ...


class ConsoleHarness:
    """Reads the mails back from the printed blocks."""

    can_fail = False

    def __init__(self) -> None:
        self._stream = io.StringIO()
        self.mailer: AnyMailer = ConsoleMailer(sender=SENDER, stream=self._stream)

    async def delivered(self, count: int) -> list[Delivered]:
        out = self._stream.getvalue()
        blocks = list(_CONSOLE_BLOCK.finditer(out))
        # One delimiter line before each mail and one after, nothing else printed.
        assert out.count("=====") == 4 * len(blocks)
        assert all(block["sender"] == SENDER for block in blocks)
        return [
            Delivered(
                to=block["to"],
                subject=block["subject"],
                message_id=block["message_id"],
                text=block["text"],
                has_html=block["html_chars"] is not None,
            )
            for block in blocks
        ]

    def break_delivery(self) -> None:
        raise AssertionError("the console mailer cannot fail")

    def restore_delivery(self) -> None:
        raise AssertionError("the console mailer cannot fail")


class _Switchable:
    """A console mailer whose server can be 'down' (the dev mailbox wraps a real one)."""

    def __init__(self) -> None:
        self.down = False
        self._console = ConsoleMailer(sender=SENDER, stream=io.StringIO())

    async def send(self, message: MailMessage) -> None:
        if self.down:
            raise MailDeliveryError("SMTP delivery failed: ConnectionRefusedError", permanent=False)
        await self._console.send(message)

    async def close(self) -> None:
        await self._console.close()


class MemoryHarness:
    """Reads the mails back from the dev mailbox."""

    can_fail = True

    def __init__(self) -> None:
        self._inner = _Switchable()
        self._mailbox = DevMailbox()
        self.mailer: AnyMailer = KeepingMailer(self._inner, self._mailbox)

    async def delivered(self, count: int) -> list[Delivered]:
        return [
            Delivered(
                to=kept.to,
                subject=kept.subject,
                message_id=kept.message_id,
                text=kept.text,
                has_html=kept.html is not None,
            )
            for kept in reversed(self._mailbox.recent())
        ]

    def break_delivery(self) -> None:
        self._inner.down = True

    def restore_delivery(self) -> None:
        self._inner.down = False


class SmtpHarness:
    """Reads the mails back from what a real SMTP server received."""

    can_fail = True

    def __init__(self, server: SmtpServer) -> None:
        self._server = server
        self.mailer: AnyMailer = SmtpMailer.from_url(server.url, sender=SENDER, timeout=2)

    async def delivered(self, count: int) -> list[Delivered]:
        received = await self._server.wait_for_async(count) if count else []
        assert all(mail["From"] == SENDER for mail in received)
        return [
            Delivered(
                to=str(mail["To"]),
                subject=str(mail["Subject"]),
                message_id=str(mail["Message-ID"]),
                text=text_body(mail),
                has_html=mail.get_body(preferencelist=("html",)) is not None,
            )
            for mail in self._server.messages
        ]

    def break_delivery(self) -> None:
        self._server.stop()

    def restore_delivery(self) -> None:
        self._server.start()


@pytest.fixture(params=["console", "memory", "smtp"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "smtp":
        with SmtpServer() as server:
            yield SmtpHarness(server)
    else:
        yield ConsoleHarness() if request.param == "console" else MemoryHarness()


def expected(message: MailMessage) -> Delivered:
    return Delivered(
        to=message.to,
        subject=message.subject,
        message_id=message.message_id,
        text=message.text,
        has_html=message.html is not None,
    )


def mailer_logs(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(
        record.getMessage() for record in caplog.records if record.name != SERVER_LOGGER
    )


@pytest.mark.anyio
@pytest.mark.parametrize("html", ["<p>Hello</p>", None])
async def test_delivers_what_it_was_given(harness: Harness, html: str | None) -> None:
    message = make_message(html=html)
    await harness.mailer.send(message)
    await harness.mailer.close()
    assert await harness.delivered(1) == [expected(message)]


@pytest.mark.anyio
async def test_a_resend_carries_the_same_message_id(harness: Harness) -> None:
    message = make_message()
    await harness.mailer.send(message)
    await harness.mailer.send(message)
    first, second = await harness.delivered(2)
    assert first.message_id == second.message_id == message.message_id


@pytest.mark.anyio
async def test_logs_no_body_token_or_recipient(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    message = make_message()
    with caplog.at_level(logging.DEBUG):
        await harness.mailer.send(message)
        await harness.delivered(1)
        await harness.mailer.close()
    logged = mailer_logs(caplog)
    assert TOKEN not in logged
    assert message.to not in logged
    assert "Hello" not in logged


@pytest.mark.anyio
async def test_a_failed_delivery_raises_and_delivers_nothing(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    if not harness.can_fail:
        pytest.skip("this mailer never fails (it writes to a local stream)")
    harness.break_delivery()
    message = make_message()
    with caplog.at_level(logging.DEBUG), pytest.raises(MailDeliveryError) as caught:
        await harness.mailer.send(message)
    # A server that is away is worth retrying; the error names no recipient or token.
    assert not caught.value.permanent
    assert message.to not in str(caught.value)
    assert TOKEN not in str(caught.value) + mailer_logs(caplog)
    assert await harness.delivered(0) == []
    harness.restore_delivery()
    await harness.mailer.send(message)
    assert await harness.delivered(1) == [expected(message)]
