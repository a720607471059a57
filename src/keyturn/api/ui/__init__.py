"""Hosted pages under ``/ui/`` (server-rendered Jinja2, no external assets; JavaScript only
for passkeys, one same-origin file on the pages that offer them).

Each page module holds a module-level router; ``HostedPages(settings)`` builds the shared
:class:`~keyturn.api.ui.kit.PageKit` (reached by handlers through ``kit.KitDep``) and
gathers the routers. ``/oauth2/authorize`` (``api/oauth2``) renders its pages with the
same kit and sends a signed-out browser to ``/ui/login?next=<its own URL>``.

The pages are not part of the JSON API: every route is left out of the OpenAPI document.
"""

from __future__ import annotations

from fastapi import APIRouter

from keyturn.api.ui import (
    account,
    dev_mail,
    landing,
    mfa,
    passkey_login,
    rp_logout,
    security,
    sign_in,
)
from keyturn.api.ui.kit import MailboxReader, PageKit
from keyturn.config import Settings

__all__ = ["HostedPages"]


class HostedPages:
    """The page routers and what their pages share (kept in ``app.state.hosted_pages``)."""

    def __init__(self, settings: Settings, *, mailbox: MailboxReader | None = None) -> None:
        # Mails carry tokens: the mailbox exists in dev only (404 in production).
        dev_mailbox = None if settings.is_production else mailbox
        self.kit = PageKit(settings, mailbox=dev_mailbox)
        self.router = APIRouter(include_in_schema=False)
        renderer = self.kit.renderer
        self.router.add_api_route(
            renderer.stylesheet_path, renderer.stylesheet_response, methods=["GET"]
        )
        self.router.add_api_route(renderer.script_path, renderer.script_response, methods=["GET"])
        self.router.include_router(sign_in.router)
        self.router.include_router(passkey_login.router)
        self.router.include_router(account.router)
        self.router.include_router(mfa.router)
        self.router.include_router(security.router)
        if dev_mailbox is not None:
            self.router.include_router(dev_mail.router)
        # GET /: a page for browsers, the same links as JSON for other clients.
        self.landing_router = landing.router
        # Pages outside /ui whose paths the OpenID Connect specifications fix.
        self.oauth_router = rp_logout.router
