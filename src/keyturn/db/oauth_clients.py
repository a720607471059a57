"""OAuth client registrations: one row per client, found by its public ``client_id``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, bindparam, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from keyturn.db.models import OAuthClientRow
from keyturn.db.types import affected
from keyturn.domain import OAuthClient


def _client(row: OAuthClientRow) -> OAuthClient:
    return OAuthClient(
        id=row.id,
        client_id=row.client_id,
        client_name=row.client_name,
        redirect_uris=tuple(row.redirect_uris),
        post_logout_redirect_uris=tuple(row.post_logout_redirect_uris),
        grant_types=tuple(row.grant_types),
        response_types=tuple(row.response_types),
        scope=row.scope,
        token_endpoint_auth_method=row.token_endpoint_auth_method,
        allowed_cors_origins=tuple(row.allowed_cors_origins),
        require_pkce=row.require_pkce,
        id_token_signed_response_alg=row.id_token_signed_response_alg,
        created_at=row.created_at,
        updated_at=row.updated_at,
        secret_rotated_at=row.secret_rotated_at,
        tokens_revoked_at=row.tokens_revoked_at,
        client_uri=row.client_uri,
        policy_uri=row.policy_uri,
        tos_uri=row.tos_uri,
    )


def _metadata(client: OAuthClient) -> dict[str, object]:
    """The columns a registration update writes (everything but identity and secret)."""
    return {
        "client_name": client.client_name,
        "redirect_uris": list(client.redirect_uris),
        "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
        "grant_types": list(client.grant_types),
        "response_types": list(client.response_types),
        "scope": client.scope,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "allowed_cors_origins": list(client.allowed_cors_origins),
        "require_pkce": client.require_pkce,
        "id_token_signed_response_alg": client.id_token_signed_response_alg,
        "client_uri": client.client_uri,
        "policy_uri": client.policy_uri,
        "tos_uri": client.tos_uri,
        "updated_at": client.updated_at,
    }


# Built once (every client authentication at the token, introspection and revocation
# endpoints): only the parameter changes.
_BY_CLIENT_ID = (
    select(OAuthClientRow)
    .where(OAuthClientRow.client_id == bindparam("client_id"))
    .execution_options(populate_existing=True)
)


class SqlOAuthClientRepository:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def add(self, client: OAuthClient, secret_digest: str | None) -> bool:
        # A savepoint: the unique client_id decides a (practically impossible) collision.
        try:
            async with self._db.begin_nested():
                self._db.add(
                    OAuthClientRow(
                        id=client.id,
                        client_id=client.client_id,
                        secret_digest=secret_digest,
                        created_at=client.created_at,
                        secret_rotated_at=client.secret_rotated_at,
                        **_metadata(client),
                    )
                )
        except IntegrityError:
            return False
        return True

    async def cors_origins(self) -> frozenset[str]:
        # One small column of every client; the caller caches the set briefly.
        rows = await self._db.scalars(select(OAuthClientRow.allowed_cors_origins))
        return frozenset(origin for origins in rows for origin in origins or ())

    async def find(self, client_id: str) -> tuple[OAuthClient, str | None] | None:
        row = await self._db.scalar(_BY_CLIENT_ID, {"client_id": client_id})
        return (_client(row), row.secret_digest) if row else None

    async def page(self, *, limit: int, after: tuple[datetime, str] | None) -> list[OAuthClient]:
        query = (
            select(OAuthClientRow)
            .order_by(OAuthClientRow.created_at, OAuthClientRow.client_id)
            .limit(limit)
        )
        if after is not None:
            created, client_id = after
            # Keyset pagination, oldest first (the (created_at, client_id) index).
            query = query.where(
                or_(
                    OAuthClientRow.created_at > created,
                    and_(
                        OAuthClientRow.created_at == created,
                        OAuthClientRow.client_id > client_id,
                    ),
                )
            )
        return [_client(row) for row in await self._db.scalars(query)]

    async def update(self, client: OAuthClient) -> bool:
        result = await self._db.execute(
            update(OAuthClientRow)
            .where(OAuthClientRow.client_id == client.client_id)
            .values(**_metadata(client))
        )
        return bool(affected(result))

    async def set_secret(
        self, client_id: str, digest: str, now: datetime, *, revoke_tokens: bool = False
    ) -> bool:
        # One UPDATE: the old digest is gone the moment this commits (no grace period),
        # and with revoke_tokens the client's access tokens issued until now with it.
        values: dict[str, object] = {
            "secret_digest": digest,
            "secret_rotated_at": now,
            "updated_at": now,
        }
        if revoke_tokens:
            values["tokens_revoked_at"] = now
        result = await self._db.execute(
            update(OAuthClientRow).where(OAuthClientRow.client_id == client_id).values(**values)
        )
        return bool(affected(result))

    async def delete(self, client_id: str) -> bool:
        result = await self._db.execute(
            delete(OAuthClientRow).where(OAuthClientRow.client_id == client_id)
        )
        return bool(affected(result))
