"""The audit log: reading it (``audit:read``, filters and an id cursor, newest first) and
recording what an authenticated caller did."""

from __future__ import annotations

from typing import Any

from keyturn.domain import AuditEvent, AuditFilter, ClientInfo, Principal, utcnow
from keyturn.services.admin.permissions import Authorizer
from keyturn.services.paging import Page, decode_cursor, encode_cursor, page_of
from keyturn.services.ports import UnitOfWork, UnitOfWorkFactory


async def record_action(
    uow: UnitOfWork,
    event: str,
    principal: Principal,
    client: ClientInfo,
    data: dict[str, Any],
) -> None:
    """Audit an action in ``uow``'s transaction, naming who did it and from where.

    A caller using a personal API key has no session; the key's id says which key acted.
    The host operator's actions are recorded as ``operator.<action>`` (``admin.user_locked``
    becomes ``operator.user_locked``) without a user, like ``operator.key_revoked``.
    """
    if principal.operator:
        action = event.split(".", 1)[-1]
        await uow.audit.record(f"operator.{action}", now=utcnow(), data=data)
        return
    if principal.api_key_id is not None:
        data = {**data, "api_key_id": str(principal.api_key_id)}
    await uow.audit.record(
        event,
        now=utcnow(),
        user_id=principal.user_id,
        session_id=principal.session_id,
        ip=client.ip,
        data=data,
    )


class AuditLogService:
    def __init__(self, *, uow_factory: UnitOfWorkFactory, authorizer: Authorizer) -> None:
        self._uow_factory = uow_factory
        self._authorizer = authorizer

    async def search(
        self, principal: Principal, where: AuditFilter, *, limit: int, cursor: str | None
    ) -> Page[AuditEvent]:
        await self._authorizer.require(principal, "audit:read")
        before = decode_cursor(cursor, _event_id, parts=1) if cursor else None
        async with self._uow_factory() as uow:
            rows = await uow.audit.search(where, limit=limit + 1, before_id=before)
        return page_of(rows, limit, event_cursor)


def event_cursor(event: AuditEvent) -> str:
    """The cursor that continues a listing right after ``event``: its id.

    Base64 of a 15-digit id fills the 20 characters the REST route admits, ids up to a
    quadrillion.
    """
    return encode_cursor(event.id)


def _event_id(text: str) -> int:
    if not text.isdigit() or len(text) > 19:
        raise ValueError("not an event id")
    return int(text)
