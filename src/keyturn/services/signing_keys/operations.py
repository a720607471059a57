"""Signing keys for operators (``keys:write``): list, rotate and revoke, audited."""

from __future__ import annotations

from typing import Any

from keyturn.domain import ClientInfo, Principal, utcnow
from keyturn.services.admin import Authorizer, record_action
from keyturn.services.ports import UnitOfWorkFactory
from keyturn.services.signing_keys.key_info import KeyInfo
from keyturn.services.signing_keys.manager import KeyManager, KeyRevocation, RotationResult

PERMISSION = "keys:write"


class AdminKeyService:
    def __init__(
        self, *, keys: KeyManager, authorizer: Authorizer, uow_factory: UnitOfWorkFactory
    ) -> None:
        self._keys = keys
        self._authorizer = authorizer
        self._uow_factory = uow_factory

    async def list_keys(self, principal: Principal) -> list[KeyInfo]:
        await self._authorizer.require(principal, PERMISSION)
        return await self._keys.list_keys()

    async def rotate(
        self, principal: Principal, *, force: bool, client: ClientInfo
    ) -> RotationResult:
        await self._authorizer.require(principal, PERMISSION)
        result = await self._keys.rotate(force=force)
        async with self._uow_factory() as uow:
            await record_action(
                uow,
                "admin.keys_rotated",
                principal,
                client,
                {
                    "activated": result.activated or "",
                    "next": result.next or "",
                    "forced": "yes" if force else "no",
                    # Every chain, e.g. "ES256=<kid> RS256=<kid>" ("-": only a next key made).
                    "chains": " ".join(
                        f"{chain.alg}={chain.activated or '-'}" for chain in result.chains
                    ),
                },
            )
            await uow.commit()
        return result

    async def revoke(self, principal: Principal, kid: str, *, client: ClientInfo) -> KeyRevocation:
        """Emergency revocation of one signing key (signing_keys/revocation.py), audited.

        Raises:
            UnknownSigningKey: No key has this kid.
        """
        await self._authorizer.require(principal, PERMISSION)
        result = await self._keys.revoke(kid)
        async with self._uow_factory() as uow:
            await record_action(uow, "admin.key_revoked", principal, client, _revocation(result))
            await uow.commit()
        return result

    async def revoke_as_operator(self, kid: str) -> KeyRevocation:
        """``keyturn keys revoke``: the operator on the host needs no permission; audited
        without a user."""
        result = await self._keys.revoke(kid)
        async with self._uow_factory() as uow:
            await uow.audit.record("operator.key_revoked", now=utcnow(), data=_revocation(result))
            await uow.commit()
        return result


def _revocation(result: KeyRevocation) -> dict[str, Any]:
    return {
        "kid": result.kid,
        "alg": result.alg,
        "previous_state": result.previous_state,
        "already_revoked": "yes" if result.already_revoked else "no",
        "activated": result.activated or "",
    }
