"""Administration: users, roles and permissions, personal API keys, and the audit log.

See docs/technical/2026-12-05_backend_architecture.md for how the packages fit together.
"""

# The names other packages use; they import them from here, never from a submodule.
# Order matters: modules that need another services package come last, so a cycle
# through it (accounts <-> admin) finds these names already bound; isort keeps it.
# isort: off
from keyturn.services.admin.permissions import Authorizer, require_fresh_login
from keyturn.services.admin.guard import keep_an_admin
from keyturn.services.admin.audit_log import AuditLogService, AuditPage, record_action
from keyturn.services.admin.audit_chain import AuditChainService
from keyturn.services.admin.roles import RoleService
from keyturn.services.admin.api_keys import ApiKeyService, CreatedApiKey, looks_like_api_key
from keyturn.services.admin.users import AdminUserService, UserPage, user_cursor
# isort: on

__all__ = [
    "AdminUserService",
    "ApiKeyService",
    "AuditChainService",
    "AuditLogService",
    "AuditPage",
    "Authorizer",
    "CreatedApiKey",
    "RoleService",
    "UserPage",
    "keep_an_admin",
    "looks_like_api_key",
    "record_action",
    "require_fresh_login",
    "user_cursor",
]
