"""The dev mailbox: a bounded in-memory copy of every mail this process sent.

In ``dev`` the composition root wraps the real mailer (console or SMTP) in
``KeepingMailer``, so a developer reads mails at ``/ui/dev/mail`` instead of scrolling the
console. Production never builds one (mails carry tokens; the page would hand them out).
Per process: with several workers each keeps what it sent.
"""

from __future__ import annotations

import itertools
from collections import deque
from datetime import UTC, datetime
from typing import Protocol

from keyturn.domain import KeptMail
from keyturn.domain_mail import MailMessage

__all__ = ["DEV_MAILBOX_SIZE", "DevMailbox", "KeepingMailer"]

# Enough for a session of clicking around; the oldest copy falls out first.
DEV_MAILBOX_SIZE = 100


class DevMailbox:
    """The last ``size`` mails, newest first on read."""

    def __init__(self, size: int = DEV_MAILBOX_SIZE) -> None:
        self._mails: deque[KeptMail] = deque(maxlen=size)
        self._numbers = itertools.count(1)

    def keep(self, message: MailMessage) -> KeptMail:
        kept = KeptMail(
            number=next(self._numbers),
            message_id=message.message_id,
            to=message.to,
            subject=message.subject,
            text=message.text,
            html=message.html,
            sent_at=datetime.now(UTC),
        )
        self._mails.append(kept)
        return kept

    def recent(self) -> list[KeptMail]:
        return list(reversed(self._mails))

    def find(self, number: int) -> KeptMail | None:
        return next((mail for mail in self._mails if mail.number == number), None)


class _Mailer(Protocol):
    # What KeepingMailer needs of the mailer it wraps; the port itself belongs to
    # keyturn.services.outbox, which infra must not import.
    async def send(self, message: MailMessage) -> None: ...
    async def close(self) -> None: ...


class KeepingMailer:
    """A ``Mailer`` that delivers through ``inner`` and then keeps a copy.

    The copy is taken after a successful send only: a failed attempt is retried by the
    outbox worker and would otherwise show up twice.
    """

    def __init__(self, inner: _Mailer, mailbox: DevMailbox) -> None:
        self._inner = inner
        self._mailbox = mailbox

    async def send(self, message: MailMessage) -> None:
        await self._inner.send(message)
        self._mailbox.keep(message)

    async def close(self) -> None:
        await self._inner.close()
