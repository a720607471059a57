"""Builds the administration services from the settings and the accounts services."""

from __future__ import annotations

from dataclasses import dataclass

from keyturn.config import Settings
from keyturn.security.digests import KeyRing
from keyturn.services.accounts import AccountServices
from keyturn.services.admin.api_keys import ApiKeyService
from keyturn.services.admin.audit_chain import AuditChainService
from keyturn.services.admin.audit_log import AuditLogService
from keyturn.services.admin.permissions import Authorizer
from keyturn.services.admin.roles import RoleService
from keyturn.services.admin.users import AdminUserService
from keyturn.services.ports import UnitOfWorkFactory
from keyturn.services.signing_keys import AdminKeyService, KeyManager


@dataclass(frozen=True, slots=True)
class AdminServices:
    authorizer: Authorizer
    roles: RoleService
    users: AdminUserService
    audit_log: AuditLogService
    audit_chain: AuditChainService
    keys: AdminKeyService
    api_keys: ApiKeyService


def build_admin(
    settings: Settings,
    *,
    uow_factory: UnitOfWorkFactory,
    key_ring: KeyRing,
    keys: KeyManager,
    accounts: AccountServices,
) -> AdminServices:
    authorizer = Authorizer(uow_factory=uow_factory)
    users = AdminUserService(
        uow_factory=uow_factory,
        authorizer=authorizer,
        access_tokens=accounts.access_tokens,
        sessions=accounts.sessions,
        tokens=accounts.tokens,
        mail=accounts.mail,
        guard=accounts.guard,
        set_password_ttl=settings.verify_email_ttl,
    )
    return AdminServices(
        authorizer=authorizer,
        roles=RoleService(uow_factory=uow_factory, authorizer=authorizer),
        users=users,
        audit_log=AuditLogService(uow_factory=uow_factory, authorizer=authorizer),
        audit_chain=AuditChainService(
            uow_factory=uow_factory, retention_days=settings.audit_retention_days
        ),
        keys=AdminKeyService(keys=keys, authorizer=authorizer, uow_factory=uow_factory),
        api_keys=ApiKeyService(
            uow_factory=uow_factory,
            authorizer=authorizer,
            guard=accounts.guard,
            key_ring=key_ring,
            recent_sign_in=accounts.recent_sign_in,
        ),
    )
