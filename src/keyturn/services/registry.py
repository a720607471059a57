"""The set of services the edge calls, built once by the composition root (``keyturn.app``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from keyturn.security.passwords import HashPool
from keyturn.services.accounts import (
    AccessTokenService,
    AccountRequests,
    AccountService,
    AuthService,
    SessionService,
    SignupService,
    Throttle,
    UserService,
)
from keyturn.services.admin import (
    AdminUserService,
    ApiKeyService,
    AuditChainService,
    AuditLogService,
    Authorizer,
    RoleService,
)
from keyturn.services.audit_batch import AuditBatch
from keyturn.services.mfa import MfaServices
from keyturn.services.oauth2 import (
    AuthorizationService,
    BrowserSessions,
    ClientService,
    ConsentService,
    IdTokenSigner,
    OAuthCorsOrigins,
    OAuthTokenService,
    RpLogoutService,
    TokenService,
    UserInfoService,
)
from keyturn.services.outbox import MailOutbox, OutboxMaintenance, OutboxWorker
from keyturn.services.signing_keys import AdminKeyService, KeyManager

HealthCheck = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Services:
    auth: AuthService
    signup: SignupService
    users: UserService
    sessions: SessionService
    account: AccountService
    account_requests: AccountRequests
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
    # Second factors (issue 15): TOTP, recovery codes, passkeys, the login's second step.
    mfa: MfaServices
    # client_credentials' audit rows, inserted by a background task (issue 18).
    audit_batch: AuditBatch
    authorizations: AuthorizationService
    tokens: TokenService
    # RFC 8414 / OIDC Discovery document (services/oauth2/metadata.py), built once.
    server_metadata: Mapping[str, Any]
