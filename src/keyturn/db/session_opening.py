"""Opening a session: the conditional insert every sign-in shares, and a login's session,
first refresh token and audit row in one statement (issue 18).

Used by the session repository (inside a unit of work) and by ``sign_in.py`` (on a bare
connection); either hands its own executor in.
"""

from __future__ import annotations

import typing
from typing import Any

from sqlalchemy import Table, bindparam, false, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from keyturn.db.audit import INSERT_UNSEALED, UNSEALED_COLUMNS, audit_values
from keyturn.db.models import AuditEventRow, RefreshTokenRow, SessionRow, UserRow
from keyturn.db.types import affected
from keyturn.domain import AuditRecord, RefreshToken, Session

_SESSION_FIELDS = (
    "id",
    "user_id",
    "created_at",
    "last_seen_at",
    "expires_at",
    "auth_time",
    "amr",
    "ip",
    "user_agent",
    "client_id",
    "scope",
    "consent_id",
)


def _new_session_select() -> Any:
    """``SELECT <the new session's values> FROM users WHERE <the user may open it>``.

    The condition of every session insert (issue 12 finding 20): the user still exists,
    is neither disabled nor locked, and its ``session_epoch`` is the one the credential
    check read. Whatever ended every session in between (password change or reset, lock,
    disable, delete, "end my other sessions") bumped the epoch, so the insert writes
    nothing. ``FOR SHARE`` locks the user row on PostgreSQL until the commit: a
    ``revoke_all`` in flight (which updates the row first) is waited for and its new epoch
    seen; one starting later waits for this commit and then revokes the new session.
    SQLite ignores the clause: BEGIN IMMEDIATE already serialises writers.
    """
    sessions = typing.cast(Table, SessionRow.__table__)
    users = typing.cast(Table, UserRow.__table__)
    values = [
        users.c.id if name == "user_id" else bindparam(f"s_{name}", type_=sessions.c[name].type)
        for name in _SESSION_FIELDS
    ]
    return (
        select(*values)
        .where(
            users.c.id == bindparam("s_user_id", type_=users.c.id.type),
            users.c.session_epoch == bindparam("epoch", type_=users.c.session_epoch.type),
            users.c.disabled == false(),
            or_(
                users.c.locked_until.is_(None),
                users.c.locked_until <= bindparam("s_created_at", type_=users.c.locked_until.type),
            ),
        )
        .with_for_update(read=True)
    )


def _insert_session() -> Any:
    sessions = typing.cast(Table, SessionRow.__table__)
    return insert(sessions).from_select(list(_SESSION_FIELDS), _new_session_select())


# A first refresh token's own values in the login's statement (its session's id comes
# from the session CTE; it has no parent and is not rotated yet).
_TOKEN_CTE_COLUMNS = ("id", "digest", "generation", "created_at")


def _signed_in(with_token: bool) -> Any:
    """``WITH new_session AS (INSERT INTO sessions SELECT ... FROM users WHERE ...
    RETURNING id)[, new_token AS (INSERT INTO refresh_tokens SELECT ... FROM new_session)]
    INSERT INTO audit_events SELECT ... FROM new_session``, built once (PostgreSQL; every
    login).

    No session row (the condition of :func:`_new_session_select` failed), no token row and
    no audit row: the statement's row count says whether the login opened its session.
    PostgreSQL runs a data-modifying CTE to completion whether or not the main statement
    reads it, and one statement is atomic by itself.

    Core tables and parameters named ``s_*`` / ``t_*`` / ``a_*``: with a parameter dict an
    ORM insert would become a bulk insert, and a key named like a column would join VALUES.
    """
    sessions = typing.cast(Table, SessionRow.__table__)
    tokens = typing.cast(Table, RefreshTokenRow.__table__)
    audit = typing.cast(Table, AuditEventRow.__table__)
    new_session = _insert_session().returning(sessions.c.id).cte("new_session")
    ctes = [new_session]
    if with_token:
        new_token = (
            insert(tokens)
            .from_select(
                [*_TOKEN_CTE_COLUMNS, "session_id"],
                select(
                    *(bindparam(f"t_{n}", type_=tokens.c[n].type) for n in _TOKEN_CTE_COLUMNS),
                    new_session.c.id,
                ),
            )
            .returning(tokens.c.id)
            .cte("new_token")
        )
        ctes.append(new_token)
    return (
        insert(audit)
        .from_select(
            list(UNSEALED_COLUMNS),
            select(
                *(bindparam(f"a_{name}", type_=audit.c[name].type) for name in UNSEALED_COLUMNS)
            ).select_from(new_session),
        )
        .add_cte(*ctes)
    )


INSERT_SESSION = _insert_session()
_INSERT_TOKEN = insert(typing.cast(Table, RefreshTokenRow.__table__))
_SIGNED_IN = _signed_in(with_token=False)
_SIGNED_IN_WITH_TOKEN = _signed_in(with_token=True)


async def write_signed_in(
    db: AsyncSession | AsyncConnection,
    session: Session,
    token: tuple[RefreshToken, str] | None,
    event: AuditRecord,
    epoch: int,
    *,
    postgresql: bool,
) -> bool:
    """Opens a session after a sign-in, with its first refresh token (and digest) if any
    and the audit row of the sign-in, under the condition of
    :meth:`SqlSessionRepository.add`. False when nothing was written.

    On PostgreSQL one statement (data-modifying CTEs, :func:`_signed_in`), atomic by itself:
    on an autocommit connection it is the whole transaction, one round trip instead of four
    (BEGIN, session, audit row, COMMIT). On SQLite, where a statement costs no round trip,
    the three plain inserts: the caller's transaction makes them one.
    """
    params = session_params(session, epoch)
    if not postgresql:
        if not bool(affected(await db.execute(INSERT_SESSION, params))):
            return False
        if token is not None:
            await db.execute(_INSERT_TOKEN, _token_values(*token))
        await db.execute(INSERT_UNSEALED, audit_values(event))
        return True
    params.update({f"a_{name}": value for name, value in audit_values(event).items()})
    if token is not None:
        values = _token_values(*token)
        params.update({f"t_{name}": values[name] for name in _TOKEN_CTE_COLUMNS})
    statement = _SIGNED_IN_WITH_TOKEN if token is not None else _SIGNED_IN
    return bool(affected(await db.execute(statement, params)))


def _token_values(token: RefreshToken, digest: str) -> dict[str, Any]:
    return {
        "id": token.id,
        "session_id": token.session_id,
        "digest": digest,
        "parent_id": token.parent_id,
        "generation": token.generation,
        "created_at": token.created_at,
        "rotated_at": token.rotated_at,
    }


def refresh_token_row(token: RefreshToken, digest: str) -> RefreshTokenRow:
    return RefreshTokenRow(**_token_values(token, digest))


def session_params(session: Session, epoch: int) -> dict[str, Any]:
    params = {f"s_{name}": getattr(session, name) for name in _SESSION_FIELDS}
    params["s_amr"] = list(session.amr)
    params["epoch"] = epoch
    return params
