"""Outbound mail: a console mailer for development and an SMTP one.

DESIGN.md section 6: mail leaves through an outbox written in the same transaction as the
change and is delivered at least once by a worker, which hands each ``MailMessage`` to
a mailer (the ``Mailer`` port of ``keyturn.services.outbox``). Two implementations:

* ``ConsoleMailer`` - the development default (``KEYTURN_SMTP_URL`` unset): prints each
  mail to a text stream so a developer can follow links and copy tokens. It writes to
  the stream directly, never through logging: the JSON log must not carry tokens.
* ``SmtpMailer`` - aiosmtplib, one connection per message (mail volume is low and a
  pooled connection would need its own reconnect logic).

``send`` raises ``MailDeliveryError`` whose ``permanent`` flag tells the worker whether to
retry (temporary) or dead-letter at once (permanent). Neither implementation logs a body,
a recipient or a credential.
"""

from __future__ import annotations

import email.utils
import ssl
import sys
from email.message import EmailMessage
from typing import Self, TextIO
from urllib.parse import parse_qsl, unquote, urlsplit

import aiosmtplib

from keyturn.domain_mail import MailMessage
from keyturn.errors import MailDeliveryError

__all__ = ["ConsoleMailer", "SmtpMailer", "build_mailer"]

DEFAULT_SMTP_TIMEOUT = 10.0
_DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ConsoleMailer:
    """Development mailer: prints every mail as a delimited block.

    This is how a developer sees verification and reset links without a mail server.
    It writes to ``stream`` directly rather than through logging, because mails carry
    tokens and the JSON log must never carry one. Do not use it in production.

    Args:
        sender: ``From`` value, e.g. ``"Keyturn <no-reply@localhost>"``.
        stream: Where to write; ``sys.stderr`` (looked up at each send) when omitted, so
            mails never mix with the JSON log lines on stdout.
    """

    def __init__(self, *, sender: str, stream: TextIO | None = None) -> None:
        self._sender = sender
        self._stream = stream

    async def send(self, message: MailMessage) -> None:
        """See ``Mailer.send``; never fails."""
        stream = self._stream if self._stream is not None else sys.stderr
        html_note = (
            "" if message.html is None else f"(HTML alternative: {len(message.html)} chars)\n"
        )
        stream.write(
            "\n===== keyturn mail (console mailer, development only) =====\n"
            f"From: {self._sender}\n"
            f"To: {message.to}\n"
            f"Subject: {message.subject}\n"
            f"Message-ID: {message.message_id}\n"
            "\n"
            f"{message.text.rstrip()}\n"
            f"{html_note}"
            "===== end of mail =====\n"
        )
        stream.flush()

    async def close(self) -> None:
        """Nothing to release; the stream belongs to the caller."""


class SmtpMailer:
    """Sends through an SMTP relay with aiosmtplib.

    Build it with ``from_url``. TLS certificates are verified against the system trust
    store (or ``tls_context``).

    Args:
        hostname: Relay host.
        port: Relay port.
        sender: ``From`` value; the envelope sender is taken from it.
        username: Login, or ``None`` for no AUTH.
        password: Password for ``username``.
        use_tls: Implicit TLS from the first byte (``smtps://``).
        start_tls: Require STARTTLS before AUTH and MAIL (``?starttls=1``); fails if the
            relay does not offer it rather than falling back to plain text.
        timeout: Seconds for connecting and for each command.
        tls_context: Custom SSL context (private CA); ``None`` uses the default one.
    """

    def __init__(
        self,
        *,
        hostname: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool = False,
        start_tls: bool = False,
        timeout: float = DEFAULT_SMTP_TIMEOUT,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if use_tls and start_tls:
            raise ValueError("implicit TLS and STARTTLS are mutually exclusive")
        self.hostname = hostname
        self.port = port
        self.sender = sender
        self.username = username
        self._password = password
        self.use_tls = use_tls
        self.start_tls = start_tls
        self.timeout = timeout
        self._tls_context = tls_context

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        sender: str,
        timeout: float = DEFAULT_SMTP_TIMEOUT,
        tls_context: ssl.SSLContext | None = None,
    ) -> Self:
        """Build a mailer from ``KEYTURN_SMTP_URL``.

        Accepted forms: ``smtp://[user:pass@]host[:port][?starttls=1]`` (plain, port 25
        by default; ``starttls=1`` requires STARTTLS) and ``smtps://[user:pass@]host[:port]``
        (implicit TLS, port 465 by default). User and password are percent-decoded.

        Raises:
            ValueError: The URL is malformed. The message never repeats the URL, so a
                password cannot leak into a log through it.
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ValueError("SMTP URL is malformed (check the host and port)") from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise ValueError("SMTP URL scheme must be smtp:// or smtps://")
        if not parts.hostname:
            raise ValueError("SMTP URL has no host")
        if parts.path not in ("", "/") or parts.fragment:
            raise ValueError("SMTP URL must not have a path or fragment")
        start_tls = False
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key != "starttls":
                raise ValueError("SMTP URL accepts only the 'starttls' query parameter")
            if value.lower() in _TRUE:
                start_tls = True
            elif value.lower() not in _FALSE:
                raise ValueError("SMTP URL 'starttls' must be 1 or 0")
        if start_tls and scheme == "smtps":
            raise ValueError("smtps:// already uses TLS; 'starttls' applies to smtp:// only")
        username = unquote(parts.username) if parts.username is not None else None
        password = unquote(parts.password) if parts.password is not None else None
        if (username is None) != (password is None) or username == "":
            raise ValueError("SMTP URL must give both user and password, or neither")
        return cls(
            hostname=parts.hostname,
            port=port if port is not None else _DEFAULT_PORTS[scheme],
            sender=sender,
            username=username,
            password=password,
            use_tls=scheme == "smtps",
            start_tls=start_tls,
            timeout=timeout,
            tls_context=tls_context,
        )

    def __repr__(self) -> str:
        # Written by hand so the password never appears in a repr or traceback.
        auth = f"{self.username}:***@" if self.username is not None else ""
        scheme = "smtps" if self.use_tls else "smtp"
        query = "?starttls=1" if self.start_tls else ""
        return f"SmtpMailer({scheme}://{auth}{self.hostname}:{self.port}{query})"

    def build_email(self, message: MailMessage) -> EmailMessage:
        """Build the MIME message exactly as ``send`` transmits it.

        Raises:
            MailDeliveryError: (permanent) A header value is invalid, e.g. contains a
                line break.
        """
        mail = EmailMessage()
        try:
            mail["From"] = self.sender
            mail["To"] = message.to
            mail["Subject"] = message.subject
            mail["Date"] = email.utils.formatdate(usegmt=True)
            mail["Message-ID"] = message.message_id
            # RFC 3834 section 5: marks the mail as automatic so responders do not answer.
            mail["Auto-Submitted"] = "auto-generated"
            mail.set_content(message.text)
            if message.html is not None:
                mail.add_alternative(message.html, subtype="html")
        except (ValueError, TypeError) as exc:
            # The stdlib refuses CR/LF in header values (header injection): no retry helps.
            raise MailDeliveryError(
                f"mail message cannot be built: {type(exc).__name__}", permanent=True
            ) from exc
        return mail

    async def send(self, message: MailMessage) -> None:
        """See ``Mailer.send``."""
        mail = self.build_email(message)
        try:
            await aiosmtplib.send(
                mail,
                hostname=self.hostname,
                port=self.port,
                username=self.username,
                password=self._password,
                use_tls=self.use_tls,
                # False, not None: aiosmtplib's None means "upgrade if offered", which
                # would make plain smtp:// depend on the relay's certificate.
                start_tls=self.start_tls,
                timeout=self.timeout,
                tls_context=self._tls_context,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise _delivery_error(exc) from exc

    async def close(self) -> None:
        """Nothing to release: every ``send`` opens and closes its own connection."""


def _delivery_error(exc: BaseException) -> MailDeliveryError:
    """Classify an aiosmtplib (or socket) failure for the retry policy.

    Only a 5xx reply about this recipient or this message is permanent. A 5xx to AUTH,
    HELO or MAIL FROM is the relay's configuration, not the message's fault: it stays
    temporary so fixing the configuration delivers the backlog (the outbox dead-letters
    after 24 hours anyway).
    """
    name = type(exc).__name__
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [refused.code for refused in exc.recipients]
        permanent = bool(codes) and all(code >= 500 for code in codes)
        return MailDeliveryError(f"SMTP recipient refused ({codes})", permanent=permanent)
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        return MailDeliveryError(f"SMTP {name} ({exc.code})", permanent=exc.code >= 500)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return MailDeliveryError(f"SMTP {name} ({exc.code})", permanent=False)
    # Connection refused or reset, timeouts, TLS failures, STARTTLS not offered.
    return MailDeliveryError(f"SMTP delivery failed: {name}", permanent=False)


def build_mailer(
    smtp_url: str | None, *, sender: str, timeout: float = DEFAULT_SMTP_TIMEOUT
) -> ConsoleMailer | SmtpMailer:
    """Pick the mailer for this deployment.

    Args:
        smtp_url: ``KEYTURN_SMTP_URL``; ``None`` or empty selects the console mailer.
        sender: ``KEYTURN_MAIL_FROM``.
        timeout: SMTP connect and command timeout in seconds.

    Returns:
        An ``SmtpMailer`` when a URL is given, else a ``ConsoleMailer`` on stdout.

    Raises:
        ValueError: ``smtp_url`` is malformed.
    """
    if smtp_url:
        return SmtpMailer.from_url(smtp_url, sender=sender, timeout=timeout)
    return ConsoleMailer(sender=sender)
