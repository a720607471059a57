"""The set of services the edge calls, built once by the composition root (``keyturn.app``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from keyturn.security.passwords import HashPool
from keyturn.services.access_tokens import AccessTokenService
from keyturn.services.account import AccountService
from keyturn.services.admin_keys import AdminKeyService
from keyturn.services.admin_users import AdminUserService
from keyturn.services.api_keys import ApiKeyService
from keyturn.services.audit_log import AuditLogService
from keyturn.services.auth import AuthService
from keyturn.services.authorization import Authorizer
from keyturn.services.browser_sessions import BrowserSessions
from keyturn.services.clients import ClientService
from keyturn.services.consents import ConsentService
from keyturn.services.id_tokens import IdTokenSigner
from keyturn.services.keys import KeyManager
from keyturn.services.oauth2.authorize import AuthorizationService
from keyturn.services.oauth2.tokens import TokenService
from keyturn.services.oauth_cors import OAuthCorsOrigins
from keyturn.services.oauth_tokens import OAuthTokenService
from keyturn.services.outbox import MailOutbox, OutboxWorker
from keyturn.services.roles import RoleService
from keyturn.services.rp_logout import RpLogoutService
from keyturn.services.sessions import SessionService
from keyturn.services.throttle import Throttle
from keyturn.services.userinfo import UserInfoService
from keyturn.services.users import UserService

HealthCheck = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Services:
    auth: AuthService
    users: UserService
    sessions: SessionService
    account: AccountService
    authorizer: Authorizer
    roles: RoleService
    admin_users: AdminUserService
    audit_log: AuditLogService
    admin_keys: AdminKeyService
    api_keys: ApiKeyService
    clients: ClientService
    oauth_tokens: OAuthTokenService
    consents: ConsentService
    oauth_cors: OAuthCorsOrigins
    rp_logout: RpLogoutService
    userinfo: UserInfoService
    access_tokens: AccessTokenService
    browser: BrowserSessions
    throttle: Throttle
    keys: KeyManager
    id_tokens: IdTokenSigner
    hash_pool: HashPool
    outbox: MailOutbox
    outbox_worker: OutboxWorker
    readiness_checks: Mapping[str, HealthCheck]
    email_verification_required: bool
    authorizations: AuthorizationService
    tokens: TokenService
    # RFC 8414 / OIDC Discovery document (services/oauth2/metadata.py), built once.
    server_metadata: Mapping[str, Any]
