"""Bodies of ``/v1/admin/audit-events``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from keyturn.api.rest.schemas.common import FromDomain, Page


class AuditEventOut(FromDomain):
    id: int
    type: str
    occurred_at: datetime
    user_id: uuid.UUID | None
    session_id: uuid.UUID | None
    ip: str | None
    data: dict[str, Any]


class AuditEventList(Page[AuditEventOut]):
    pass
