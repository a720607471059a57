"""``/v1/admin/audit-events``: reading the audit log [audit:read]."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from keyturn.api.http.deps import ServicesDep, require_permission
from keyturn.api.rest.responses import problems
from keyturn.api.rest.schemas.admin_audit import AuditEventList, AuditEventOut
from keyturn.domain import AuditFilter, Principal

router = APIRouter(prefix="/v1/admin", tags=["admin"])

AuditReader = Annotated[Principal, Depends(require_permission("audit:read"))]


@router.get("/audit-events", responses=problems(401, 403, 422), summary="Audit events")
async def audit_events(
    principal: AuditReader,
    services: ServicesDep,
    user_id: uuid.UUID | None = None,
    type: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
) -> AuditEventList:
    where = AuditFilter(user_id=user_id, type=type, since=since, until=until)
    page = await services.audit_log.search(principal, where, limit=limit, cursor=cursor)
    return AuditEventList.of(page, AuditEventOut.of)
