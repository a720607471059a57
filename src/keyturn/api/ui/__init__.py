"""Hosted pages under ``/ui/`` (server-rendered Jinja2, no JavaScript, no external assets).

``HostedPages(settings)`` builds the router and the shared :class:`~keyturn.api.ui.kit.PageKit`;
``/oauth2/authorize`` takes ``pages.kit.current_session`` as its dependency and
sends a signed-out browser to ``/ui/login?next=<its own URL>``.

The pages are not part of the JSON API: every route is left out of the OpenAPI document.
"""

from __future__ import annotations

from fastapi import APIRouter

from keyturn.api.ui.account import add_account_routes
from keyturn.api.ui.dev_mail import MailboxReader, add_dev_mail_routes
from keyturn.api.ui.kit import PageKit
from keyturn.api.ui.landing import landing_router
from keyturn.api.ui.rp_logout import add_rp_logout_routes
from keyturn.api.ui.sign_in import add_sign_in_routes
from keyturn.config import Settings

__all__ = ["HostedPages"]


class HostedPages:
    """The ``/ui`` router and what its pages share."""

    def __init__(self, settings: Settings, *, mailbox: MailboxReader | None = None) -> None:
        self.kit = PageKit(settings)
        self.router = APIRouter(prefix="/ui", include_in_schema=False)
        renderer = self.kit.renderer
        self.router.add_api_route(
            renderer.stylesheet_path.removeprefix("/ui"),
            renderer.stylesheet_response,
            methods=["GET"],
        )
        add_sign_in_routes(self.router, self.kit)
        add_account_routes(self.router, self.kit)
        dev_mailbox = mailbox is not None and not settings.is_production
        if mailbox is not None and dev_mailbox:
            # Mails carry tokens: the mailbox exists in dev only (404 in production).
            add_dev_mail_routes(self.router, self.kit, mailbox)
        # GET /: a page for browsers, the same links as JSON for other clients.
        self.landing_router = landing_router(settings, self.kit, dev_mailbox=dev_mailbox)
        # Pages outside /ui whose paths the OpenID Connect specifications fix.
        self.oauth_router = APIRouter(include_in_schema=False)
        add_rp_logout_routes(self.oauth_router, self.kit)
