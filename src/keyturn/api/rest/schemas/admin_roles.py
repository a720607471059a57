"""Bodies of ``/v1/admin/roles``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from keyturn.api.rest.schemas.common import FromDomain, Page, Request

RoleName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Description = Annotated[str, StringConstraints(max_length=500)]
Permission = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class RoleIn(Request):
    name: RoleName
    description: Description = ""
    permissions: list[Permission] = Field(default_factory=list)


class RolePatch(Request):
    description: Description | None = None
    permissions: list[Permission] | None = None


class RoleOut(FromDomain):
    name: str
    description: str
    permissions: list[str]
    created_at: datetime


class RoleList(Page[RoleOut]):
    # Every role in one answer: never a next page.
    next_cursor: None = None
