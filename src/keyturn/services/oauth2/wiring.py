"""Builds the OAuth 2.0 / OpenID Connect services from the settings, the accounts services
and the administration's authorizer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keyturn.config import Settings
from keyturn.security.digests import KeyRing
from keyturn.services.accounts import AccountServices
from keyturn.services.admin import Authorizer
from keyturn.services.audit_batch import AuditBatch
from keyturn.services.change_cache import ChangeFeed
from keyturn.services.oauth2.authorize import AuthorizationService
from keyturn.services.oauth2.browser_sessions import BrowserSessions
from keyturn.services.oauth2.client_cache import ClientCache
from keyturn.services.oauth2.clients import ClientService
from keyturn.services.oauth2.consents import ConsentService
from keyturn.services.oauth2.cors import OAuthCorsOrigins
from keyturn.services.oauth2.id_tokens import IdTokenHints, IdTokenSigner
from keyturn.services.oauth2.metadata import server_metadata
from keyturn.services.oauth2.rp_logout import RpLogoutService
from keyturn.services.oauth2.token_management import OAuthTokenService
from keyturn.services.oauth2.tokens import TokenService
from keyturn.services.oauth2.userinfo import UserInfoService
from keyturn.services.ports import UnitOfWorkFactory
from keyturn.services.signing_keys import KeyManager


@dataclass(frozen=True, slots=True)
class OAuth2Services:
    authorizations: AuthorizationService
    tokens: TokenService
    # RFC 8414 / OIDC Discovery document, built once.
    server_metadata: Mapping[str, Any]
    browser: BrowserSessions
    clients: ClientService
    token_management: OAuthTokenService
    consents: ConsentService
    cors: OAuthCorsOrigins
    rp_logout: RpLogoutService
    userinfo: UserInfoService
    id_tokens: IdTokenSigner
    # client_credentials' audit rows, flushed by a background task (audit_batch.py).
    audit_batch: AuditBatch


def build_oauth2(
    settings: Settings,
    *,
    uow_factory: UnitOfWorkFactory,
    read_uow_factory: UnitOfWorkFactory,
    key_ring: KeyRing,
    keys: KeyManager,
    accounts: AccountServices,
    authorizer: Authorizer,
    client_changes: ChangeFeed,
) -> OAuth2Services:
    access_tokens = accounts.access_tokens
    # One cache per process, shared by client authentication and introspection.
    client_cache = ClientCache(changes=client_changes, read_uow_factory=read_uow_factory)
    audit_batch = AuditBatch(uow_factory=uow_factory)
    id_tokens = IdTokenSigner(keys=keys, algorithms=settings.id_token_algs)
    hints = IdTokenHints(
        keys=keys,
        issuer=settings.issuer,
        algorithms=settings.id_token_algs,
        max_age=settings.refresh_token_ttl,
    )
    authorizations = AuthorizationService(
        uow_factory=uow_factory, key_ring=key_ring, issuer=settings.issuer, hints=hints
    )
    token_management = OAuthTokenService(
        uow_factory=uow_factory,
        keys=keys,
        access_tokens=access_tokens,
        key_ring=key_ring,
        issuer=settings.issuer,
        idle_ttl=settings.session_idle_ttl,
        clients=client_cache,
        read_uow_factory=read_uow_factory,
    )
    return OAuth2Services(
        authorizations=authorizations,
        tokens=TokenService(
            uow_factory=uow_factory,
            auth=accounts.auth,
            authorizations=authorizations,
            access_tokens=access_tokens,
            id_tokens=id_tokens,
            guard=accounts.guard,
            issuer=settings.issuer,
            audit_batch=audit_batch,
        ),
        server_metadata=server_metadata(settings.issuer, id_token_algs=settings.id_token_algs),
        browser=BrowserSessions(
            uow_factory=uow_factory,
            auth=accounts.auth,
            access_tokens=access_tokens,
            key_ring=key_ring,
            idle_ttl=settings.session_idle_ttl,
        ),
        clients=ClientService(
            uow_factory=uow_factory,
            cache=client_cache,
            authorizer=authorizer,
            guard=accounts.guard,
            key_ring=key_ring,
            id_token_algs=settings.id_token_algs,
            access_tokens=access_tokens,
        ),
        token_management=token_management,
        consents=ConsentService(
            uow_factory=uow_factory, read_uow_factory=read_uow_factory, access_tokens=access_tokens
        ),
        cors=OAuthCorsOrigins(uow_factory=uow_factory),
        rp_logout=RpLogoutService(uow_factory=uow_factory, hints=hints),
        userinfo=UserInfoService(uow_factory=uow_factory, tokens=token_management),
        id_tokens=id_tokens,
        audit_batch=audit_batch,
    )
