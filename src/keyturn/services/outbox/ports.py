"""The outbox's ports: the mailer that delivers and the templates that render.

Met structurally by ``keyturn.infra.mail`` (console, SMTP), ``keyturn.infra.dev_mailbox``
and ``keyturn.infra.templates``, which never import services.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from keyturn.domain_mail import MailMessage

__all__ = ["MailRenderer", "Mailer", "PayloadResealer"]


class Mailer(Protocol):
    """Delivers one ``MailMessage``; the outbox worker is its only caller."""

    async def send(self, message: MailMessage) -> None:
        """Hand ``message`` to the mail system.

        Raises:
            MailDeliveryError: Delivery failed; ``permanent`` says whether to retry.
        """
        ...

    async def close(self) -> None:
        """Release what the mailer holds."""
        ...


class MailRenderer(Protocol):
    """Renders one mail kind into a ``MailMessage`` (``keyturn.infra.templates``)."""

    def render(self, kind: str, *, to: str, message_id: str, **context: str | int) -> MailMessage:
        """Render the mail of ``kind`` for ``to``; ``ValueError`` on a wrong context."""
        ...


class PayloadResealer(Protocol):
    """Re-encrypts every queued payload under the first key of the ring (``db.outbox``)."""

    async def __call__(self, progress: Callable[[int], None] | None = None) -> tuple[int, int, int]:
        """Returns (re-encrypted, already current, unreadable and not dead)."""
        ...
