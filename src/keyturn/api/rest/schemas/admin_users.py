"""Bodies of ``/v1/admin/users``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Self

from pydantic import EmailStr, Field

from keyturn.api.rest.schemas.common import (
    Name,
    Page,
    Request,
    SessionOut,
    UserOut,
    user_fields,
)
from keyturn.api.rest.schemas.mfa import MfaSummaryOut
from keyturn.domain import User
from keyturn.domain_mfa import MfaStatus


class AdminUserOut(UserOut):
    disabled: bool
    locked_until: datetime | None
    lock_kind: Literal["automatic", "administrative"] | None = Field(
        description="The lock in force: automatic (the throttle's; a password reset lifts "
        "it), administrative (only an administrator's unlock lifts it), or null."
    )
    mfa: MfaSummaryOut = Field(description="The user's second factors (never a secret)")

    @classmethod
    def with_mfa(cls, user: User, status: MfaStatus) -> Self:
        """The admin user object with its second factors."""
        return cls.model_validate({**user_fields(user), "mfa": MfaSummaryOut.of(status)})


class AdminUserList(Page[AdminUserOut]):
    pass


class CreateUserRequest(Request):
    email: EmailStr
    name: Name | None = None


class UpdateUserRequest(Request):
    name: Name | None = None
    email_verified: bool | None = None
    disabled: bool | None = None


class AdminSessionList(Page[SessionOut]):
    pass
