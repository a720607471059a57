"""A real SMTP server for tests (aiosmtpd), shared by unit, integration and e2e tests.

``SmtpServer`` runs aiosmtpd's ``Controller`` in its own thread and event loop, keeps
every received mail parsed as an ``EmailMessage``, and can be stopped and started again
on the same port (to test "SMTP is down, then comes back"). Pytest-free on purpose so
scripts and subprocess-based tests can use it too::

    server = SmtpServer()
    server.start()
    ...  # point KEYTURN_SMTP_URL at server.url
    [mail] = server.wait_for(1)
    token = extract_token(mail)
    server.stop()
"""

from __future__ import annotations

import email
import email.policy
import re
import ssl
import threading
import time
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote, unquote

import anyio
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from net import free_port

__all__ = ["SmtpServer", "extract_token", "text_body"]

_HOST = "127.0.0.1"
_POLL_SECONDS = 0.02
# "Token: <value>" on its own line (the mail templates write it so), else "token=<value>"
# in a link's query or fragment.
_TOKEN_LINE = re.compile(r"^Token: (\S+)\s*$", re.MULTILINE)
_TOKEN_PARAM = re.compile(r"[?&#]token=([^&#\s]+)")


class _Handler:
    """aiosmtpd handler: stores every accepted mail in its server."""

    def __init__(self, owner: SmtpServer) -> None:
        self._owner = owner

    async def handle_MAIL(  # noqa: N802  (aiosmtpd's hook name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        # AUTH is enforced here rather than with aiosmtpd's auth_required, which warns
        # on every connection when combined with auth_require_tls=False.
        if self._owner.auth_required and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802  (aiosmtpd's hook name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self._owner.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802  (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self._owner.data_reply is not None:
            return self._owner.data_reply
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode()
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self._owner._received(message, envelope)
        return "250 Message accepted for delivery"


class SmtpServer:
    """A real SMTP server on 127.0.0.1 that records what it receives.

    Args:
        auth: ``(user, password)`` to require AUTH (PLAIN/LOGIN, allowed without TLS
            because tests run on loopback); ``None`` accepts mail without login.
        rcpt_replies: Address -> SMTP reply (e.g. ``"550 5.1.1 No such user"``) for
            recipients to refuse; may be changed while the server runs.
        data_reply: SMTP reply to every DATA instead of accepting the mail (e.g.
            ``"451 4.3.0 Try later"``); may be changed while the server runs.
        tls_context: Server SSL context for implicit TLS (``smtps://``) on ``port``.
        starttls_context: Server SSL context to offer STARTTLS with; without it the
            server does not advertise STARTTLS.

    Attributes:
        port: Chosen once, so ``stop()`` then ``start()`` serves on the same port.
        envelopes: ``(mail_from, rcpt_tos)`` of each received mail, in order.
    """

    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        rcpt_replies: Mapping[str, str] | None = None,
        data_reply: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        starttls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.port = free_port()
        self.rcpt_replies: dict[str, str] = dict(rcpt_replies or {})
        self.data_reply = data_reply
        self._auth = auth
        self._tls_context = tls_context
        self._starttls_context = starttls_context
        self._lock = threading.Lock()
        self._messages: list[EmailMessage] = []
        # By the To header, read once on arrival: reading a parsed header costs about
        # 0.2 ms, and a test waiting for its mail used to read every mail of the run's
        # server each poll, which starved the event loop that delivers the mail.
        self._by_recipient: dict[str, list[EmailMessage]] = {}
        self.envelopes: list[tuple[str | None, list[str]]] = []
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        """URL of this server: ``smtps://`` with implicit TLS, else ``smtp://``.

        Carries the credentials when AUTH is required, and ``?starttls=1`` when the
        server offers STARTTLS.
        """
        scheme = "smtps" if self._tls_context is not None else "smtp"
        userinfo = ""
        if self._auth is not None:
            user, password = (quote(part, safe="") for part in self._auth)
            userinfo = f"{user}:{password}@"
        query = "?starttls=1" if self._starttls_context is not None else ""
        return f"{scheme}://{userinfo}{_HOST}:{self.port}{query}"

    @property
    def auth_required(self) -> bool:
        return self._auth is not None

    @property
    def running(self) -> bool:
        return self._controller is not None

    @property
    def messages(self) -> list[EmailMessage]:
        """A snapshot of the mails received so far, oldest first."""
        with self._lock:
            return list(self._messages)

    def messages_to(self, address: str) -> list[EmailMessage]:
        """A snapshot of the mails whose To header is ``address``, oldest first."""
        with self._lock:
            return list(self._by_recipient.get(address, ()))

    def clear(self) -> None:
        """Forget every received mail."""
        with self._lock:
            self._messages.clear()
            self._by_recipient.clear()
            self.envelopes.clear()

    def start(self) -> None:
        """Serve on ``port``; returns once the server accepts connections."""
        if self._controller is not None:
            raise RuntimeError("SMTP server already running")
        smtp_options: dict[str, Any] = {}
        if self._auth is not None:
            # Loopback only: AUTH is offered (and required, see _Handler) without TLS.
            smtp_options.update(authenticator=self._authenticate, auth_require_tls=False)
        if self._starttls_context is not None:
            smtp_options.update(tls_context=self._starttls_context)
        # A fresh Controller each time: a stopped one has closed its event loop.
        controller = Controller(
            _Handler(self),
            hostname=_HOST,
            port=self.port,
            ssl_context=self._tls_context,
            **smtp_options,
        )
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        """Stop serving; the port refuses connections until ``start()``."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wait_for(self, count: int, timeout: float = 10) -> list[EmailMessage]:
        """Block until at least ``count`` mails arrived; return all of them.

        Blocks the calling thread: from async code use ``wait_for_async``.

        Raises:
            AssertionError: Timed out; the message lists what did arrive.
        """
        deadline = time.monotonic() + timeout
        while True:
            messages = self.messages
            if len(messages) >= count:
                return messages
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_report(count, timeout, messages))
            time.sleep(_POLL_SECONDS)

    # Same shape as wait_for on purpose: a timeout here reports what did arrive, which
    # an anyio.fail_after around the call could not.
    async def wait_for_async(
        self,
        count: int,
        timeout: float = 10,  # noqa: ASYNC109
    ) -> list[EmailMessage]:
        """``wait_for`` that lets the event loop run (e.g. an outbox worker) meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.messages
            if len(messages) >= count:
                return messages
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_report(count, timeout, messages))
            await anyio.sleep(_POLL_SECONDS)

    def _received(self, message: EmailMessage, envelope: Envelope) -> None:
        recipient = str(message["To"])
        with self._lock:
            self._messages.append(message)
            self._by_recipient.setdefault(recipient, []).append(message)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: object,
    ) -> AuthResult:
        assert self._auth is not None
        user, password = self._auth
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        # handled=False: aiosmtpd then answers 535 itself (True would leave the client hanging).
        return AuthResult(success=ok, handled=False)

    @staticmethod
    def _timeout_report(count: int, timeout: float, messages: list[EmailMessage]) -> str:
        seen = [f"to={m['To']!s} subject={m['Subject']!s}" for m in messages]
        return f"expected {count} mail(s) within {timeout}s, got {len(messages)}: {seen}"


def text_body(message: EmailMessage) -> str:
    """The text/plain part of ``message``, with ``\n`` line ends.

    Raises:
        AssertionError: The message has no text/plain part.
    """
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, f"no text/plain part in {message['Subject']!s}"
    assert isinstance(part, EmailMessage)
    content = part.get_content()
    assert isinstance(content, str)
    # Mail travels with CRLF line ends; tests compare against the "\n" text that was sent.
    return content.replace("\r\n", "\n")


def extract_token(message: EmailMessage) -> str:
    """The one-time token in a mail's text part.

    Looks for a ``Token: <value>`` line first (the templates write one when the caller
    passes a token), then for ``token=<value>`` in a link.

    Raises:
        AssertionError: No token found.
    """
    text = text_body(message)
    found = _TOKEN_LINE.search(text) or _TOKEN_PARAM.search(text)
    assert found is not None, f"no token in mail {message['Subject']!s}:\n{text}"
    return unquote(found.group(1))
