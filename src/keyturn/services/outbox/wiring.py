"""Builds the mail outbox and its worker from the settings and the adapters ``keyturn.app``
made."""

from __future__ import annotations

from urllib.parse import urlsplit

from keyturn.config import Settings
from keyturn.security.aead import Aead
from keyturn.services.outbox.delivery import MailOutbox, OutboxWorker, RequestResolver
from keyturn.services.outbox.ports import Mailer, MailRenderer
from keyturn.services.ports import UnitOfWorkFactory


def build_outbox(settings: Settings, *, templates: MailRenderer, aead: Aead) -> MailOutbox:
    return MailOutbox(
        templates=templates,
        aead=aead,
        message_id_domain=urlsplit(settings.issuer).hostname or "localhost",
    )


def build_outbox_worker(
    settings: Settings,
    *,
    uow_factory: UnitOfWorkFactory,
    mailer: Mailer,
    aead: Aead,
    resolver: RequestResolver,
) -> OutboxWorker:
    return OutboxWorker(
        uow_factory=uow_factory,
        mailer=mailer,
        aead=aead,
        # The lease outlives the slowest send, or a second worker would send it again.
        lease_seconds=max(60, int(settings.smtp_timeout * 4)),
        # Account requests (forgot, resend, email change) are resolved here.
        resolver=resolver,
    )
