"""The set of services the edge calls, built once by the composition root (``keyturn.app``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from keyturn.security.passwords import HashPool
from keyturn.services.accounts.access_tokens import AccessTokenService
from keyturn.services.accounts.authentication import AuthService
from keyturn.services.accounts.lifecycle import AccountService
from keyturn.services.accounts.profile import UserService
from keyturn.services.accounts.sessions import SessionService
from keyturn.services.accounts.throttle import Throttle
from keyturn.services.admin.api_keys import ApiKeyService
from keyturn.services.admin.audit_chain import AuditChainService
from keyturn.services.admin.audit_log import AuditLogService
from keyturn.services.admin.permissions import Authorizer
from keyturn.services.admin.roles import RoleService
from keyturn.services.admin.users import AdminUserService
from keyturn.services.oauth2.authorize import AuthorizationService
from keyturn.services.oauth2.browser_sessions import BrowserSessions
from keyturn.services.oauth2.clients import ClientService
from keyturn.services.oauth2.consents import ConsentService
from keyturn.services.oauth2.cors import OAuthCorsOrigins
from keyturn.services.oauth2.id_tokens import IdTokenSigner
from keyturn.services.oauth2.rp_logout import RpLogoutService
from keyturn.services.oauth2.token_management import OAuthTokenService
from keyturn.services.oauth2.tokens import TokenService
from keyturn.services.oauth2.userinfo import UserInfoService
from keyturn.services.outbox.delivery import MailOutbox, OutboxWorker
from keyturn.services.outbox.maintenance import OutboxMaintenance
from keyturn.services.signing_keys.manager import KeyManager
from keyturn.services.signing_keys.operations import AdminKeyService

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
    audit_chain: AuditChainService
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
    outbox_maintenance: OutboxMaintenance
    readiness_checks: Mapping[str, HealthCheck]
    email_verification_required: bool
    authorizations: AuthorizationService
    tokens: TokenService
    # RFC 8414 / OIDC Discovery document (services/oauth2/metadata.py), built once.
    server_metadata: Mapping[str, Any]
