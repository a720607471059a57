"""Bodies of the account routes (verification, password reset); the hosted pages share them."""

from __future__ import annotations

from pydantic import EmailStr

from keyturn.api.rest.schemas.common import OneTimeTokenValue, Password, Request


class EmailRequest(Request):
    email: EmailStr


class ResetPasswordRequest(Request):
    token: OneTimeTokenValue
    password: Password
