"""The administrative side of second factors: reset by an administrator, status of other
users for the admin user object, and re-sealing seeds for ``keyturn secret rotate``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from keyturn.domain import ClientInfo, Principal, utcnow
from keyturn.domain_mfa import MfaStatus
from keyturn.security.aead import Aead
from keyturn.services.accounts import AccountMail
from keyturn.services.admin import Authorizer, guard_target, record_action
from keyturn.services.ports import UnitOfWorkFactory

READ = "users:read"
WRITE = "users:write"


def seed_aad(user_id: uuid.UUID) -> bytes:
    """The AEAD context of a TOTP seed: a sealed seed copied to another user's row is
    refused (AES-GCM authenticates it with the row's user id)."""
    return b"mfa_totp.sealed_secret:" + user_id.bytes


async def reset_factors(
    actor: Principal,
    user_id: uuid.UUID,
    client: ClientInfo,
    *,
    uow_factory: UnitOfWorkFactory,
    authorizer: Authorizer,
    mail: AccountMail,
) -> None:
    """Deletes the user's TOTP factor, recovery codes and passkeys, mails the owner and
    audits ``mfa.reset`` (the lost-phone path: the owner then signs in with the password
    alone and sets up a factor again)."""
    held = await authorizer.require(actor, WRITE)
    now = utcnow()
    async with uow_factory() as uow:
        # The same rank rule as every other change to an account: never on someone who
        # holds more than the actor.
        user = await guard_target(uow, held=held, user_id=user_id, now=now)
        totp = await uow.totp.delete(user_id)
        codes = await uow.recovery_codes.delete_all(user_id)
        passkeys = await uow.passkeys.delete_all(user_id)
        await mail.send(uow, "mfa_reset", to=user.email)
        await record_action(
            uow,
            "mfa.reset",
            actor,
            client,
            {
                "target_user_id": str(user_id),
                "totp": totp,
                "recovery_codes": codes,
                "passkeys": passkeys,
            },
        )
        await uow.commit()
    mail.outbox.wake()


async def statuses(
    actor: Principal,
    user_ids: Sequence[uuid.UUID],
    *,
    read_uow_factory: UnitOfWorkFactory,
    authorizer: Authorizer,
) -> dict[uuid.UUID, MfaStatus]:
    """Each user's factors, in a fixed number of statements (a page of the admin list)."""
    await authorizer.require(actor, READ)
    async with read_uow_factory() as uow:
        return await uow.mfa.statuses(user_ids)


async def reseal_seeds(uow_factory: UnitOfWorkFactory, aead: Aead) -> tuple[int, int]:
    """Re-encrypts every TOTP seed under the first ring key; (re-encrypted, current)."""
    resealed = current = 0
    async with uow_factory() as uow:
        for user_id, blob in await uow.totp.sealed():
            if not aead.needs_reencrypt(blob):
                current += 1
                continue
            aad = seed_aad(user_id)
            sealed = aead.encrypt(aead.decrypt(blob, aad=aad), aad=aad)
            # Compare-and-set: a seed replaced or removed meanwhile stays as it is.
            if await uow.totp.replace_sealed(user_id, old=blob, new=sealed):
                resealed += 1
        await uow.commit()
    return resealed, current
