"""OAuth 2.0 client registry (``clients:write``) and client authentication (RFC 6749 §2.3).

Secrets are kept as keyed digests; nobody changes a client holding more than they do;
every authentication failure answers ``invalid_client`` alike.
See docs/technical/2026-11-26_backend_security-implementation.md (V10).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import unquote_plus

from keyturn.domain import ClientInfo, OAuthClient, Principal, utcnow
from keyturn.errors import (
    InvalidClient,
    InvalidClientMetadata,
    NotFound,
    ServiceUnavailable,
)
from keyturn.security.digests import Digester, KeyRing, constant_time_equals, new_token
from keyturn.services.accounts import AccessTokenService, CredentialGuard
from keyturn.services.admin import Authorizer, record_action
from keyturn.services.oauth2.client_cache import ClientCache
from keyturn.services.oauth2.client_records import check_scope_held, metadata_of, record_of
from keyturn.services.oauth2.client_rules import AUTH_METHODS, ClientMetadata, check_metadata
from keyturn.services.paging import Page, aware_time, decode_cursor, encode_cursor, page_of
from keyturn.services.ports import UnitOfWork, UnitOfWorkFactory

PERMISSION = "clients:write"
# secrets.token_urlsafe(16): 128 random bits as 22 URL-safe characters. Such an id needs
# no escaping in a URL path, a query or the form-encoding of HTTP Basic (RFC 6749 §2.3.1).
CLIENT_ID_BYTES = 16
CLIENT_ID_SHAPE = re.compile(r"^[A-Za-z0-9_-]{22}$")
CLIENT_ID_ATTEMPTS = 3
# Failed client checks are throttled per client_id + IP under their own account names.
THROTTLE_ACCOUNT = "oauth-client:"
DIGEST_PURPOSE = "oauth-client-secret"


@dataclass(frozen=True, slots=True)
class CreatedClient:
    """A client and, for a confidential client, its secret (shown exactly once)."""

    client: OAuthClient
    client_secret: str | None


@dataclass(frozen=True, slots=True)
class RotatedSecret:
    """A confidential client and its new secret (shown exactly once)."""

    client: OAuthClient
    client_secret: str


@dataclass(frozen=True, slots=True)
class ClientPatch:
    """PATCH semantics: None leaves a field as it is (no field may be set to null)."""

    client_name: str | None = None
    redirect_uris: tuple[str, ...] | None = None
    post_logout_redirect_uris: tuple[str, ...] | None = None
    grant_types: tuple[str, ...] | None = None
    response_types: tuple[str, ...] | None = None
    scope: str | None = None
    token_endpoint_auth_method: str | None = None
    allowed_cors_origins: tuple[str, ...] | None = None
    require_pkce: bool | None = None
    id_token_signed_response_alg: str | None = None
    # "" removes a registered page (RFC 7591 section 2 metadata is optional).
    client_uri: str | None = None
    policy_uri: str | None = None
    tos_uri: str | None = None


def new_client_id() -> str:
    """A fresh public client_id: 128 random bits, 22 URL-safe characters."""
    return secrets.token_urlsafe(CLIENT_ID_BYTES)


def _cursor(client: OAuthClient) -> str:
    return encode_cursor(client.created_at.isoformat(), client.client_id)


def _after(created_at: str, client_id: str) -> tuple[datetime, str]:
    if not CLIENT_ID_SHAPE.match(client_id):
        raise ValueError("not a cursor we issued")
    return aware_time(created_at), client_id


def decode_basic_credentials(token: str) -> tuple[str, str]:
    """The client_id and secret of an HTTP Basic ``Authorization`` value (after ``Basic``).

    RFC 6749 section 2.3.1: both are form-urlencoded (``application/x-www-form-urlencoded``,
    Appendix B) before being joined with ``:`` and base64-encoded (RFC 7617), so a ``:`` or
    ``+`` in a secret arrives escaped and is decoded here.

    Raises:
        InvalidClient: When the value is not base64 of ``id:secret`` in UTF-8.
    """
    try:
        raw = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidClient("The Basic credentials are malformed.") from exc
    client_id, colon, secret = raw.partition(":")
    if not colon:
        raise InvalidClient("The Basic credentials are malformed.")
    return unquote_plus(client_id), unquote_plus(secret)


def _apply(meta: ClientMetadata, patch: ClientPatch) -> ClientMetadata:
    changes = {
        name: getattr(patch, name)
        for name in ClientPatch.__dataclass_fields__
        if getattr(patch, name) is not None
    }
    if "grant_types" in changes and "response_types" not in changes:
        # Derived again from the new grant types, as on create.
        changes["response_types"] = None
    return replace(meta, **changes)


class ClientService:
    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        authorizer: Authorizer,
        guard: CredentialGuard,
        key_ring: KeyRing,
        id_token_algs: Sequence[str],
        access_tokens: AccessTokenService,
        cache: ClientCache,
    ) -> None:
        self._uow_factory = uow_factory
        self._access_tokens = access_tokens
        # The clients authenticated lately, forgotten on every replica when one changes
        # (client_cache.py); every write below publishes after its commit.
        self._cache = cache
        self._authorizer = authorizer
        self._id_token_algs = tuple(id_token_algs)
        self._guard = guard
        self._digester = Digester(key_ring, DIGEST_PURPOSE)
        # What an unknown client (or a public one) is compared against: equal work.
        self._dummy_digest = self._digester.digest(new_token())

    async def create(
        self, principal: Principal, meta: ClientMetadata, client: ClientInfo
    ) -> CreatedClient:
        held = await self._authorizer.require(principal, PERMISSION)
        checked = check_metadata(meta, id_token_algs=self._id_token_algs)
        check_scope_held(held, checked.scope)
        now = utcnow()
        secret = None if checked.is_public else new_token(32)
        digest = None if secret is None else self._digester.digest(secret)
        async with self._uow_factory() as uow:
            for _ in range(CLIENT_ID_ATTEMPTS):
                record = record_of(checked, new_client_id(), now)
                if await uow.clients.add(record, digest):
                    break
            else:
                raise ServiceUnavailable("Could not draw a unique client_id; try again.")
            await _audit(uow, "client.created", principal, client, record.client_id)
            await uow.commit()
        # Misses are never cached, so a new client works everywhere at once; announced all
        # the same, so the rule "every write publishes" has no exception to remember.
        await self._cache.publish_change(record.client_id)
        return CreatedClient(record, secret)

    async def list_clients(
        self, principal: Principal, *, limit: int, cursor: str | None
    ) -> Page[OAuthClient]:
        await self._authorizer.require(principal, PERMISSION)
        after = decode_cursor(cursor, _after, parts=2) if cursor else None
        async with self._uow_factory() as uow:
            rows = await uow.clients.page(limit=limit + 1, after=after)
        return page_of(rows, limit, _cursor)

    async def get(self, principal: Principal, client_id: str) -> OAuthClient:
        await self._authorizer.require(principal, PERMISSION)
        async with self._uow_factory() as uow:
            return await _client(uow, client_id)

    async def update(
        self, principal: Principal, client_id: str, patch: ClientPatch, client: ClientInfo
    ) -> OAuthClient:
        held = await self._authorizer.require(principal, PERMISSION)
        now = utcnow()
        async with self._uow_factory() as uow:
            current = await _client(uow, client_id)
            check_scope_held(held, current.scope)
            checked = check_metadata(
                _apply(metadata_of(current), patch), id_token_algs=self._id_token_algs
            )
            check_scope_held(held, checked.scope)
            if checked.is_public != current.is_public:
                # Public <-> confidential changes who holds a secret; a new client is clearer
                # (a client turned confidential would have no secret to authenticate with).
                raise InvalidClientMetadata(
                    "A client cannot switch between public (none) and confidential; "
                    "register a new client.",
                    errors=[
                        {
                            "field": "token_endpoint_auth_method",
                            "message": "cannot change between none and a secret method",
                        }
                    ],
                )
            updated = replace(
                record_of(checked, client_id, current.created_at),
                id=current.id,
                updated_at=now,
                secret_rotated_at=current.secret_rotated_at,
                tokens_revoked_at=current.tokens_revoked_at,
            )
            await uow.clients.update(updated)
            fields = sorted(
                name
                for name in ClientPatch.__dataclass_fields__
                if getattr(patch, name) is not None
            )
            await _audit(uow, "client.updated", principal, client, client_id, fields=fields)
            await uow.commit()
        # After the commit, before the answer: every replica reads the new registration.
        await self._cache.publish_change(client_id)
        return updated

    async def delete(self, principal: Principal, client_id: str, client: ClientInfo) -> None:
        """Deletes the client and ends every grant it holds, in one transaction.

        The grant sessions are revoked (their refresh tokens die, userinfo and
        introspection refuse their access tokens) and deny-listed on every replica;
        codes and consents go with the client row (foreign-key cascade).
        """
        held = await self._authorizer.require(principal, PERMISSION)
        now = utcnow()
        async with self._uow_factory() as uow:
            current = await _client(uow, client_id)
            check_scope_held(held, current.scope)
            ended = await uow.sessions.revoke_for_client(client_id, now, "client_deleted")
            if not await uow.clients.delete(client_id):
                raise NotFound("No such client.")
            await _audit(
                uow, "client.deleted", principal, client, client_id, extra={"sessions": len(ended)}
            )
            await uow.commit()
        # After the commit, before the answer: no replica authenticates the client again.
        await self._cache.publish_change(client_id)
        await self._access_tokens.deny(ended)

    async def rotate_secret(
        self,
        principal: Principal,
        client_id: str,
        client: ClientInfo,
        *,
        revoke_tokens: bool = False,
    ) -> RotatedSecret:
        """A new secret, shown once; the old one stops working when this commits.

        With ``revoke_tokens`` every access token issued to the client until now is
        refused by introspection and userinfo (``tokens_revoked_at``, read with the
        client on every replica); its grants stay and refresh with the new secret.
        """
        held = await self._authorizer.require(principal, PERMISSION)
        now = utcnow()
        secret = new_token(32)
        async with self._uow_factory() as uow:
            current = await _client(uow, client_id)
            check_scope_held(held, current.scope)
            if current.is_public:
                raise InvalidClientMetadata(
                    "A public client (auth method none) has no secret to rotate.",
                    errors=[{"field": "token_endpoint_auth_method", "message": "none"}],
                )
            await uow.clients.set_secret(
                client_id, self._digester.digest(secret), now, revoke_tokens=revoke_tokens
            )
            await _audit(
                uow,
                "client.secret_rotated",
                principal,
                client,
                client_id,
                extra={"revoke_tokens": revoke_tokens},
            )
            await uow.commit()
        # After the commit, before the answer: the old secret (and, with revoke_tokens, the
        # tokens issued until now) is refused on every replica from the next request on.
        await self._cache.publish_change(client_id)
        rotated = replace(current, updated_at=now, secret_rotated_at=now)
        if revoke_tokens:
            rotated = replace(rotated, tokens_revoked_at=now)
        return RotatedSecret(rotated, secret)

    async def authenticate(
        self,
        *,
        client_id: str,
        client_secret: str | None,
        method: str,
        client: ClientInfo,
    ) -> OAuthClient:
        """Authenticates an OAuth client at the token, introspection or revocation endpoint.

        Args:
            client_id: The presented client_id (already form-decoded for Basic).
            client_secret: The presented secret; None for ``none``.
            method: How the edge received the credentials: ``client_secret_basic``
                (RFC 6749 section 2.3.1, see ``decode_basic_credentials``),
                ``client_secret_post`` (form fields) or ``none`` (a public client sends
                only its client_id). It must be the client's registered method.
            client: Where the request came from (keys the throttle, goes into the audit).

        Returns:
            The authenticated client.

        Raises:
            RateLimited: This client_id + IP failed too often (checked before any work).
            InvalidClient: Unknown client, wrong secret or wrong method, all alike.
        """
        account = THROTTLE_ACCOUNT + client_id[:64]
        await self._guard.before(account, client)
        known = CLIENT_ID_SHAPE.match(client_id) is not None
        # A pure read, from the cache on a warm process (client_cache.py says when it is
        # trusted); the failure path below writes in its own unit of work.
        found = await self._cache.find(client_id) if known else None
        stored = found[1] if found is not None and found[1] is not None else self._dummy_digest
        # Equal work whoever asks: the digests are computed and compared for every call.
        matched = False
        for candidate in self._digester.candidates(client_secret or ""):
            matched |= constant_time_equals(candidate, stored)
        if found is not None and _accepted(found, client_secret, method, matched=matched):
            return found[0]
        await self._guard.failed(
            account,
            None,
            client,
            event="client.authentication_failed",
            factor=method if method in AUTH_METHODS else "unknown",
            # Only a well-formed id goes into the audit row (never free text an attacker chose).
            data={"client_id": client_id} if known else None,
        )
        raise InvalidClient


def _accepted(
    found: tuple[OAuthClient, str | None], secret: str | None, method: str, *, matched: bool
) -> bool:
    record, digest = found
    # The method used must be the registered one (RFC 7591 section 2): a confidential
    # client cannot fall back to "none", nor a post client to Basic.
    if method != record.token_endpoint_auth_method:
        return False
    if record.is_public:
        return secret is None
    return secret is not None and digest is not None and matched


async def _client(uow: UnitOfWork, client_id: str) -> OAuthClient:
    # A string that cannot be a client_id never reaches the database.
    found = await uow.clients.find(client_id) if CLIENT_ID_SHAPE.match(client_id) else None
    if found is None:
        raise NotFound("No such client.")
    return found[0]


async def _audit(
    uow: UnitOfWork,
    event: str,
    principal: Principal,
    client: ClientInfo,
    client_id: str,
    *,
    fields: list[str] | None = None,
    extra: dict[str, object] | None = None,
) -> None:
    data: dict[str, object] = {"client_id": client_id, **(extra or {})}
    if fields is not None:
        data["fields"] = fields
    # The client_id only: never the secret or its digest.
    await record_action(uow, event, principal, client, data)
