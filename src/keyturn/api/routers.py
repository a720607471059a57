"""The app's routes in one place: which router serves what (``keyturn.app`` mounts them)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import APIRouter, FastAPI

from keyturn.api import graphql
from keyturn.api.oauth2 import authorize as oauth2_authorize
from keyturn.api.oauth2 import token as oauth2_token
from keyturn.api.oauth2 import token_management, userinfo, well_known
from keyturn.api.rest import (
    account,
    admin_audit,
    admin_clients,
    admin_keys,
    admin_roles,
    admin_users,
    api_keys,
    auth,
    consents,
    me,
    mfa_login,
    ops,
    passkey_sign_in,
    passkeys,
)
from keyturn.api.rest import mfa as me_mfa
from keyturn.api.ui import HostedPages
from keyturn.api.ui.kit import MailboxReader
from keyturn.config import Settings
from keyturn.observability.listener_settings import metrics_address


def swagger_assets() -> Path:
    """The Swagger UI 5 dist (it reads OpenAPI 3.1) shipped inside ``swagger-ui-py``.

    Located without importing the package: its ``__init__`` wires web-framework handlers
    we do not use; only the static files (and their licence) are needed.
    """
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def include_routers(
    app: FastAPI, settings: Settings, mailbox: MailboxReader | None
) -> list[APIRouter]:
    """Every router of the app: REST and OAuth (in the OpenAPI document), GraphQL, the
    hosted pages.

    Returns:
        The REST and OAuth routers, included as they are (no prefix added): the routes
        the lean edge's handlers stand in for (``keyturn.api.lean.install_lean_edge``).
    """
    rest = (auth, mfa_login, passkey_sign_in, account)
    admin = (admin_users, admin_roles, admin_audit, admin_keys, admin_clients)
    rest_me = (me, me_mfa, passkeys, api_keys, consents, ops)
    oauth = (oauth2_token, well_known, token_management, userinfo)
    described = [module.router for module in (*rest, *admin, *rest_me, *oauth)]
    for router in described:
        app.include_router(router)
    if metrics_address(settings) is None:
        app.include_router(ops.metrics_router)
    # GraphQL is described by its own schema, not by the OpenAPI document.
    app.include_router(graphql.build_router(settings), include_in_schema=False)
    if settings.show_docs:
        app.include_router(ops.docs_router(swagger_assets()))
    # Hosted pages (/ui/): HTML for browsers, not part of the OpenAPI document.
    pages = HostedPages(settings, mailbox=mailbox)
    app.state.hosted_pages = pages
    app.include_router(pages.router)
    app.include_router(pages.landing_router)
    app.include_router(oauth2_authorize.router)
    app.include_router(pages.oauth_router)
    return described
