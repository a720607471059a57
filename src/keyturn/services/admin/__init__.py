"""Administration: users, roles and permissions, personal API keys, and the audit log.

See docs/technical/2026-12-05_backend_architecture.md for how the packages fit together.
"""

# The names other packages use; they import them from here, never from a submodule.
# Order matters: modules that need another services package come last, so a cycle
# through it finds these names already bound; isort keeps the order.
# isort: off
from keyturn.services.admin.permissions import Authorizer, require_fresh_login
from keyturn.services.admin.guard import guard_target, keep_an_admin
from keyturn.services.admin.audit_log import AuditLogService, record_action
from keyturn.services.admin.audit_chain import AuditChainService
from keyturn.services.admin.roles import RoleService
from keyturn.services.admin.api_keys import ApiKeyService, looks_like_api_key
from keyturn.services.admin.users import AdminUserService
# isort: on

__all__ = [
    "AdminUserService",
    "ApiKeyService",
    "AuditChainService",
    "AuditLogService",
    "Authorizer",
    "RoleService",
    "guard_target",
    "keep_an_admin",
    "looks_like_api_key",
    "record_action",
    "require_fresh_login",
]
