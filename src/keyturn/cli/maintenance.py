"""Operator commands: the outbox, the audit log, signing keys and the secret-key ring."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, TypeVar

import typer

from keyturn.adapters import build_adapters
from keyturn.app import build_services
from keyturn.cli.common import ensure_schema, settings_or_exit
from keyturn.cli.progress import Advance, progress
from keyturn.config import Settings
from keyturn.domain import ChainReport, OutboxEntry, PruneResult, utcnow
from keyturn.errors import KeyturnError
from keyturn.security.aead import DecryptionError
from keyturn.services.registry import Services
from keyturn.services.signing_keys import (
    KeyInfo,
    KeyRevocation,
    RotationRefused,
    RotationResult,
)

outbox_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Inspect the email outbox."
)
audit_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Seal, verify and prune the audit log."
)
keys_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="List, rotate and revoke the JWT signing keys.",
)
secret_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Manage the KEYTURN_SECRET_KEY ring."
)

T = TypeVar("T")


async def _with_services(settings: Settings, use: Callable[[Services], Awaitable[T]]) -> T:
    """Run one use case on services wired by the composition root, then release them."""
    adapters = build_adapters(settings)
    try:
        return await use(build_services(settings, adapters))
    finally:
        await adapters.close()


@outbox_app.command("status")
def outbox_status(
    limit: Annotated[int, typer.Option(help="Dead letters to list")] = 50,
) -> None:
    """Count queued, sent and dead mails and list the dead letters."""
    settings = settings_or_exit()
    counts, dead = asyncio.run(_outbox_status(settings, limit))
    for status in ("pending", "sending", "sent", "dead"):
        typer.echo(f"{status:8} {counts.get(status, 0)}")
    for entry in dead:
        typer.echo(
            f"dead {entry.message_id} kind={entry.kind} attempts={entry.attempts} "
            f"created_at={entry.created_at.isoformat()}"
        )


async def _outbox_status(
    settings: Settings, limit: int
) -> tuple[dict[str, int], list[OutboxEntry]]:
    return await _with_services(
        settings, lambda services: services.outbox_maintenance.status(dead_limit=limit)
    )


@audit_app.command("verify")
def audit_verify(
    batch_size: Annotated[int, typer.Option(min=1, help="Rows read per batch")] = 1000,
) -> None:
    """Walk the audit hash chain; exit 1 naming the first edited or deleted row."""
    settings = settings_or_exit()
    ensure_schema(settings)
    with progress("verifying the audit chain", "rows") as advance:
        report = asyncio.run(_audit_verify(settings, batch_size, advance))
    if not report.intact:
        typer.echo(f"audit chain broken at row {report.bad_id}: {report.reason}", err=True)
        typer.echo(f"({report.rows} rows verified before it)", err=True)
        _echo_unsealed(report)
        raise typer.Exit(1)
    typer.echo(f"audit chain intact: {report.rows} rows")
    if report.head_id is not None:
        # Keep this elsewhere: only an outside copy of the head reveals a rewritten tail.
        typer.echo(f"head: id={report.head_id} hash={report.head_hash}")
    _echo_unsealed(report)


def _echo_unsealed(report: ChainReport) -> None:
    """The tail the walk cannot vouch for yet (the sealer chains it within seconds)."""
    if report.oldest_unsealed_at is None:
        typer.echo("unsealed: 0 rows")
        return
    age = (utcnow() - report.oldest_unsealed_at).total_seconds()
    typer.echo(
        f"unsealed: {report.unsealed} rows, oldest {max(age, 0.0):.1f} s old "
        f"({_when(report.oldest_unsealed_at)})"
    )


async def _audit_verify(settings: Settings, batch_size: int, advance: Advance) -> ChainReport:
    return await _with_services(
        settings,
        lambda services: services.audit_chain.verify(batch_size=batch_size, progress=advance),
    )


@audit_app.command("seal")
def audit_seal() -> None:
    """Chain every audit row not yet sealed now (the running servers do it each second)."""
    settings = settings_or_exit()
    ensure_schema(settings)
    sealed = asyncio.run(_with_services(settings, _seal_waiting))
    typer.echo(f"sealed {sealed} rows")


async def _seal_waiting(services: Services) -> int:
    # Waits for a running sealer's batch instead of skipping: the command's promise is
    # "sealed up to now".
    return await services.audit_chain.seal(wait=True) or 0


@audit_app.command("prune")
def audit_prune() -> None:
    """Delete audit rows older than KEYTURN_AUDIT_RETENTION_DAYS, behind a checkpoint row."""
    settings = settings_or_exit()
    ensure_schema(settings)
    # One DELETE under the chain lock: a spinner says it is working, not how far.
    with progress("pruning the audit log", ""):
        result = asyncio.run(_audit_prune(settings))
    if result.pruned_through_seq is None:
        typer.echo("nothing to prune")
        return
    typer.echo(
        f"pruned {result.deleted} rows through chain position {result.pruned_through_seq}; "
        f"checkpoint row {result.checkpoint_id}"
    )


async def _audit_prune(settings: Settings) -> PruneResult:
    return await _with_services(settings, lambda services: services.audit_chain.prune())


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"


@keys_app.command("list")
def keys_list() -> None:
    """List every signing key: kid, alg, state, created/activated/retired times."""
    settings = settings_or_exit()
    ensure_schema(settings)
    keys = asyncio.run(_keys_list(settings))
    typer.echo(f"{'kid':43}  {'alg':5}  {'state':7}  {'created':25}  {'activated':25}  retired")
    for key in keys:
        typer.echo(
            f"{key.kid:43}  {key.alg:5}  {key.state:7}  {_when(key.created_at):25}  "
            f"{_when(key.activated_at):25}  {_when(key.retired_at)}"
        )


async def _keys_list(settings: Settings) -> list[KeyInfo]:
    return await _with_services(settings, lambda services: services.keys.list_keys())


@keys_app.command("rotate")
def keys_rotate(
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Activate a next key published for less than KEYTURN_KEY_PUBLISH_AHEAD_SECONDS "
            "(a compromised key; verifiers with a cached JWKS reject new tokens for a while)",
        ),
    ] = False,
) -> None:
    """Per algorithm: activate the next key, retire the active one, publish a fresh next."""
    settings = settings_or_exit()
    ensure_schema(settings)
    try:
        result = asyncio.run(_keys_rotate(settings, force=force))
    except RotationRefused as exc:
        typer.echo(f"rotation refused: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    for chain in result.chains:
        if chain.activated is None:
            typer.echo(f"{chain.alg} no next key existed; created next key {chain.next}")
            continue
        typer.echo(f"{chain.alg} active: {chain.activated}")
        for kid in chain.retired:
            typer.echo(f"{chain.alg} retired: {kid}")
        typer.echo(f"{chain.alg} next: {chain.next}")


async def _keys_rotate(settings: Settings, *, force: bool) -> RotationResult:
    adapters = build_adapters(settings)
    try:
        keys = build_services(settings, adapters).keys
        await keys.start()  # an empty database gets its active and next keys first
        return await keys.rotate(force=force)
    finally:
        await adapters.close()


@keys_app.command("revoke")
def keys_revoke(
    kid: Annotated[str, typer.Argument(help="The kid of the compromised key")],
) -> None:
    """Emergency: revoke a key. It leaves the JWKS and its tokens are refused at once; an
    active key is replaced first (its chain's next key, or a fresh one)."""
    settings = settings_or_exit()
    ensure_schema(settings)
    try:
        result = asyncio.run(_keys_revoke(settings, kid))
    except KeyturnError as exc:  # unknown kid, or a rotation ran at the same moment
        typer.echo(f"revocation refused: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    if result.already_revoked:
        typer.echo(f"{result.alg} {kid} was already revoked")
        return
    typer.echo(f"{result.alg} revoked: {kid} (was {result.previous_state})")
    if result.activated:
        typer.echo(f"{result.alg} active: {result.activated}")
    if not settings.redis_url:
        # Without Redis this process cannot reach a running server's in-process deny-list.
        typer.echo(
            f"a running server stops trusting it at its next key reload "
            f"(within {settings.key_cache_seconds} s); revoke through the admin API for at once"
        )


async def _keys_revoke(settings: Settings, kid: str) -> KeyRevocation:
    adapters = build_adapters(settings)
    try:
        services = build_services(settings, adapters)
        await services.keys.start()  # an empty database gets its chains first
        return await services.admin_keys.revoke_as_operator(kid)
    finally:
        await adapters.close()


@secret_app.command("rotate")
def secret_rotate() -> None:
    """Re-encrypt every sealed secret under the first KEYTURN_SECRET_KEY entry.

    Prepend the new key to the ring (new,old) on every process first, run this, then drop
    the old key. Idempotent; running processes with the new ring read both meanwhile.
    """
    settings = settings_or_exit()
    ensure_schema(settings)
    try:
        with progress("re-encrypting queued mail", "mails") as advance:
            counts = asyncio.run(_secret_rotate(settings, advance))
    except DecryptionError as exc:
        typer.echo(f"secret rotation failed: {exc} (is the old key still in the ring?)", err=True)
        raise typer.Exit(1) from exc
    (keys_done, keys_current), (mail_done, mail_current, mail_failed), totp = counts
    typer.echo(f"signing keys: {keys_done} re-encrypted, {keys_current} already current")
    typer.echo(f"TOTP seeds: {totp[0]} re-encrypted, {totp[1]} already current")
    typer.echo(
        f"outbox payloads: {mail_done} re-encrypted, {mail_current} already current, "
        f"{mail_failed} unreadable"
    )
    if mail_failed:
        typer.echo(
            "some outbox payloads cannot be opened with this ring; keep the old key", err=True
        )
        raise typer.Exit(1)


async def _secret_rotate(
    settings: Settings, advance: Advance
) -> tuple[tuple[int, int], tuple[int, int, int], tuple[int, int]]:
    async def reseal(
        services: Services,
    ) -> tuple[tuple[int, int], tuple[int, int, int], tuple[int, int]]:
        keys = await services.keys.reseal()
        mails = await services.outbox_maintenance.reseal(advance)
        return keys, mails, await services.mfa.factors.reseal()

    return await _with_services(settings, reseal)
