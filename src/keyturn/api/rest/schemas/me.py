"""Bodies of ``/v1/me``: the own profile, password, email, sessions and the data export."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, EmailStr

from keyturn.api.rest.schemas.common import (
    ApiKeyOut,
    ConsentOut,
    FromDomain,
    Name,
    Page,
    Password,
    Request,
    SessionOut,
    UserOut,
    consent_out,
)
from keyturn.services.accounts.lifecycle import AccountData


class UpdateMeRequest(Request):
    name: Name | None = None


class ChangePasswordRequest(Request):
    current_password: Password
    new_password: Password


class EmailChangeRequest(Request):
    password: Password
    new_email: EmailStr


class PasswordConfirmation(Request):
    password: Password


class SessionList(Page[SessionOut]):
    pass


class ExportedSession(FromDomain):
    id: uuid.UUID
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None


class ExportedEvent(FromDomain):
    type: str
    occurred_at: datetime
    ip: str | None
    session_id: uuid.UUID | None


class AccountExport(BaseModel):
    user: UserOut
    sessions: list[ExportedSession]
    api_keys: list[ApiKeyOut]
    consents: list[ConsentOut]
    audit_events: list[ExportedEvent]

    @classmethod
    def of(cls, data: AccountData) -> AccountExport:
        return cls(
            user=UserOut.of(data.user),
            sessions=[ExportedSession.of(item) for item in data.sessions],
            api_keys=[ApiKeyOut.of(key) for key in data.api_keys],
            consents=[consent_out(item) for item in data.consents],
            audit_events=[ExportedEvent.of(event) for event in data.audit_events],
        )
