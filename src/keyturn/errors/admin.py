"""Errors of administration: permissions, roles, API key scopes."""

from __future__ import annotations

from keyturn.errors.base import Conflict, InvalidInput, NotFound, PermissionDenied


class UnknownPermission(InvalidInput):
    code = "unknown_permission"
    title = "Unknown permission"


class UnknownScope(InvalidInput):
    """An API key asks for a string that is neither a self-service scope nor a permission."""

    code = "unknown_scope"
    title = "Unknown scope"


class PermissionEscalation(PermissionDenied):
    """Granting (or building a role with) a permission the actor does not hold."""

    code = "permission_escalation"
    title = "You cannot grant a permission you do not hold"


class TargetOutranksCaller(PermissionDenied):
    """Acting on a user who holds a permission the actor does not: nobody locks, resets,
    disables, deletes or re-roles an account more powerful than their own."""

    code = "target_outranks_caller"
    title = "The user holds permissions you do not hold"


class UnknownRole(NotFound):
    code = "unknown_role"
    title = "No role has this name"


class BuiltinRole(Conflict):
    code = "builtin_role"
    title = "The built-in admin role cannot be changed or deleted"


class LastAdmin(Conflict):
    """The change would leave no active holder of the built-in admin role."""

    code = "last_admin"
    title = "The last active administrator cannot be removed, disabled or locked"
