"""``keyturn`` commands. Unknown commands and flags exit non-zero (typer/click default)."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import sys
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer
import uvicorn
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from keyturn.app import build_adapters, build_services
from keyturn.config import ConfigError, Settings, load_settings
from keyturn.db.audit import ChainReport, PruneResult
from keyturn.db.engine import create_engine, session_factory
from keyturn.db.migrate import is_current, upgrade
from keyturn.db.models import OutboxMessageRow
from keyturn.db.unit_of_work import SqlUnitOfWork
from keyturn.domain import utcnow
from keyturn.errors import KeyturnError
from keyturn.infra.logging import configure_logging
from keyturn.security.aead import Aead, DecryptionError
from keyturn.security.digests import KeyRing
from keyturn.services.keys import KeyInfo, RotationRefused, RotationResult

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Keyturn identity service.")
users_app = typer.Typer(no_args_is_help=True, help="Manage accounts.")
outbox_app = typer.Typer(no_args_is_help=True, help="Inspect the email outbox.")
app.add_typer(users_app, name="users")
app.add_typer(outbox_app, name="outbox")
audit_app = typer.Typer(no_args_is_help=True, help="Verify and prune the audit log.")
app.add_typer(audit_app, name="audit")
keys_app = typer.Typer(no_args_is_help=True, help="List and rotate the JWT signing keys.")
app.add_typer(keys_app, name="keys")
secret_app = typer.Typer(no_args_is_help=True, help="Manage the KEYTURN_SECRET_KEY ring.")
app.add_typer(secret_app, name="secret")


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except (ConfigError, ValueError) as exc:
        typer.echo(f"configuration refused: {exc}", err=True)
        raise typer.Exit(2) from exc


def _ensure_schema(settings: Settings) -> None:
    """Dev mode migrates by itself; production refuses to run on an old schema."""
    if not settings.is_production:
        asyncio.run(upgrade(settings.database_url))
    elif not asyncio.run(is_current(settings.database_url)):
        typer.echo("the database schema is behind; run `keyturn migrate` first", err=True)
        raise typer.Exit(1)


@app.command()
def migrate() -> None:
    """Apply every pending database migration."""
    settings = _settings()
    asyncio.run(upgrade(settings.database_url))
    typer.echo("database is at the latest schema")


def tls_context(config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's context for the configured cert/key, refusing anything below TLS 1.2.

    Python and OpenSSL defaults already say 1.2 on most systems, but a distribution's
    openssl.cnf can lower them; the floor is stated here so it never depends on the host.
    Module level so worker processes can unpickle it.
    """
    context = default()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (KEYTURN_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (KEYTURN_PORT)")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (KEYTURN_WORKERS)")] = None,
) -> None:
    """Serve the API (applies migrations first in dev mode)."""
    # Flags become environment so every worker process builds the same settings.
    for name, value in (("HOST", host), ("PORT", port), ("WORKERS", workers)):
        if value is not None:
            os.environ[f"KEYTURN_{name}"] = str(value)
    settings = _settings()
    # Persist the derived dev secret so every worker reads the same key ring.
    os.environ.setdefault("KEYTURN_SECRET_KEY", ",".join(settings.secret_key))
    os.environ.setdefault("KEYTURN_DATABASE_URL", settings.database_url)
    configure_logging(settings.log_level)
    _ensure_schema(settings)
    # uvicorn re-raises the SIGTERM/SIGINT it handled once shutdown is done; a no-op
    # handler turns that into a normal return, so a clean stop exits 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    uvicorn.run(
        "keyturn.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        ssl_certfile=str(settings.tls_cert_file) if settings.tls_cert_file else None,
        ssl_keyfile=str(settings.tls_key_file) if settings.tls_key_file else None,
        ssl_context_factory=tls_context if settings.tls_cert_file else None,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=30,
    )


async def _create_admin(settings: Settings, email: str, password: str) -> str:
    adapters = build_adapters(settings)
    try:
        user = await build_services(settings, adapters).users.create_admin(email, password)
        return str(user.id)
    finally:
        await adapters.close()


@users_app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="Email address of the new admin")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input")
    ] = False,
) -> None:
    """Create an account holding the built-in admin role (never pass a password as a flag)."""
    settings = _settings()
    _ensure_schema(settings)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user_id = asyncio.run(_create_admin(settings, email, password))
    except KeyturnError as exc:
        typer.echo(f"error ({exc.code}): {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"admin created: {user_id}")


@app.command()
def worker(
    poll_seconds: Annotated[
        float | None, typer.Option(help="Seconds between polls (KEYTURN_OUTBOX_POLL_SECONDS)")
    ] = None,
) -> None:
    """Deliver queued mail until SIGTERM (run with KEYTURN_OUTBOX_WORKER=off on the API)."""
    settings = _settings()
    configure_logging(settings.log_level)
    _ensure_schema(settings)
    asyncio.run(_work(settings, poll_seconds or settings.outbox_poll_seconds))


async def _work(settings: Settings, poll_seconds: float) -> None:
    adapters = build_adapters(settings)
    stop = asyncio.Event()
    try:
        services = build_services(settings, adapters)

        def shutdown() -> None:
            stop.set()
            services.outbox.wake()  # do not sleep out the poll interval first

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, shutdown)
        typer.echo(f"outbox worker {services.outbox_worker.owner} started", err=True)
        await services.outbox_worker.run(services.outbox, poll_seconds=poll_seconds, stop=stop)
    finally:
        await adapters.close()


@outbox_app.command("status")
def outbox_status(
    limit: Annotated[int, typer.Option(help="Dead letters to list")] = 50,
) -> None:
    """Count queued, sent and dead mails and list the dead letters."""
    settings = _settings()
    counts, dead = asyncio.run(_outbox_status(settings, limit))
    for status in ("pending", "sending", "sent", "dead"):
        typer.echo(f"{status:8} {counts.get(status, 0)}")
    for entry in dead:
        typer.echo(
            f"dead {entry.message_id} kind={entry.kind} attempts={entry.attempts} "
            f"created_at={entry.created_at.isoformat()}"
        )


async def _outbox_status(settings: Settings, limit: int) -> tuple[dict[str, int], list[Any]]:
    engine = create_engine(settings.database_url)
    try:
        async with SqlUnitOfWork(session_factory(engine)) as uow:
            return await uow.outbox.counts(), await uow.outbox.list_by_status("dead", limit=limit)
    finally:
        await engine.dispose()


@audit_app.command("verify")
def audit_verify(
    batch_size: Annotated[int, typer.Option(min=1, help="Rows read per batch")] = 1000,
) -> None:
    """Walk the audit hash chain; exit 1 naming the first edited or deleted row."""
    settings = _settings()
    _ensure_schema(settings)
    report = asyncio.run(_audit_verify(settings, batch_size))
    if not report.intact:
        typer.echo(f"audit chain broken at row {report.bad_id}: {report.reason}", err=True)
        typer.echo(f"({report.rows} rows verified before it)", err=True)
        raise typer.Exit(1)
    typer.echo(f"audit chain intact: {report.rows} rows")
    if report.head_id is not None:
        # Keep this elsewhere: only an outside copy of the head reveals a rewritten tail.
        typer.echo(f"head: id={report.head_id} hash={report.head_hash}")


async def _audit_verify(settings: Settings, batch_size: int) -> ChainReport:
    engine = create_engine(settings.database_url)
    try:
        async with SqlUnitOfWork(session_factory(engine)) as uow:
            return await uow.audit.verify(batch_size=batch_size)
    finally:
        await engine.dispose()


@audit_app.command("prune")
def audit_prune() -> None:
    """Delete audit rows older than KEYTURN_AUDIT_RETENTION_DAYS, behind a checkpoint row."""
    settings = _settings()
    _ensure_schema(settings)
    result = asyncio.run(_audit_prune(settings))
    if result.pruned_through_id is None:
        typer.echo("nothing to prune")
        return
    typer.echo(
        f"pruned {result.deleted} rows through id {result.pruned_through_id}; "
        f"checkpoint row {result.checkpoint_id}"
    )


async def _audit_prune(settings: Settings) -> PruneResult:
    now = utcnow()
    engine = create_engine(settings.database_url)
    try:
        async with SqlUnitOfWork(session_factory(engine)) as uow:
            result = await uow.audit.prune(
                before=now - timedelta(days=settings.audit_retention_days), now=now
            )
            await uow.commit()
            return result
    finally:
        await engine.dispose()


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"


@keys_app.command("list")
def keys_list() -> None:
    """List every signing key: kid, alg, state, created/activated/retired times."""
    settings = _settings()
    _ensure_schema(settings)
    keys = asyncio.run(_keys_list(settings))
    typer.echo(f"{'kid':43}  {'alg':5}  {'state':7}  {'created':25}  {'activated':25}  retired")
    for key in keys:
        typer.echo(
            f"{key.kid:43}  {key.alg:5}  {key.state:7}  {_when(key.created_at):25}  "
            f"{_when(key.activated_at):25}  {_when(key.retired_at)}"
        )


async def _keys_list(settings: Settings) -> list[KeyInfo]:
    adapters = build_adapters(settings)
    try:
        return await build_services(settings, adapters).keys.list_keys()
    finally:
        await adapters.close()


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
    """Activate the next key, retire the active one and publish a fresh next key."""
    settings = _settings()
    _ensure_schema(settings)
    try:
        result = asyncio.run(_keys_rotate(settings, force=force))
    except RotationRefused as exc:
        typer.echo(f"rotation refused: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    if result.activated is None:
        typer.echo(f"no next key existed; created next key {result.next}")
        return
    typer.echo(f"active: {result.activated}")
    for kid in result.retired:
        typer.echo(f"retired: {kid}")
    typer.echo(f"next: {result.next}")


async def _keys_rotate(settings: Settings, *, force: bool) -> RotationResult:
    adapters = build_adapters(settings)
    try:
        keys = build_services(settings, adapters).keys
        await keys.start()  # an empty database gets its active and next keys first
        return await keys.rotate(force=force)
    finally:
        await adapters.close()


@secret_app.command("rotate")
def secret_rotate() -> None:
    """Re-encrypt every sealed secret under the first KEYTURN_SECRET_KEY entry.

    Prepend the new key to the ring (new,old) on every process first, run this, then drop
    the old key. Idempotent; running processes with the new ring read both meanwhile.
    """
    settings = _settings()
    _ensure_schema(settings)
    try:
        counts = asyncio.run(_secret_rotate(settings))
    except DecryptionError as exc:
        typer.echo(f"secret rotation failed: {exc} (is the old key still in the ring?)", err=True)
        raise typer.Exit(1) from exc
    (keys_done, keys_current), (mail_done, mail_current, mail_failed) = counts
    typer.echo(f"signing keys: {keys_done} re-encrypted, {keys_current} already current")
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
    settings: Settings,
) -> tuple[tuple[int, int], tuple[int, int, int]]:
    adapters = build_adapters(settings)
    try:
        keys = await build_services(settings, adapters).keys.reseal()
        aead = Aead(KeyRing.from_strings(settings.secret_key))
        mail = await _reseal_outbox(session_factory(adapters.engine), aead)
        return keys, mail
    finally:
        await adapters.close()


RESEAL_BATCH = 200


async def _reseal_outbox(
    sessions: async_sessionmaker[AsyncSession], aead: Aead
) -> tuple[int, int, int]:
    """Re-encrypts queued mail (pending, sending, dead: every non-empty payload) in
    batches; returns (re-encrypted, already current, unreadable and not dead).

    Each UPDATE is a compare-and-set on the old blob, so a message a worker delivers (and
    empties) meanwhile is left alone. The AAD is the Message-ID, as in MailOutbox.enqueue.
    """
    done = current = failed = 0
    after: uuid.UUID | None = None
    while True:
        async with sessions() as db:
            query = (
                select(
                    OutboxMessageRow.id,
                    OutboxMessageRow.message_id,
                    OutboxMessageRow.payload,
                    OutboxMessageRow.status,
                )
                .where(func.length(OutboxMessageRow.payload) > 0)
                .order_by(OutboxMessageRow.id)
                .limit(RESEAL_BATCH)
            )
            if after is not None:
                query = query.where(OutboxMessageRow.id > after)
            rows = (await db.execute(query)).all()
            for entry_id, message_id, payload, status in rows:
                aad = message_id.encode()
                try:
                    if not aead.needs_reencrypt(payload):
                        current += 1
                        continue
                    sealed = aead.encrypt(aead.decrypt(payload, aad=aad), aad=aad)
                except DecryptionError:
                    # A dead letter nobody can open any more is past saving; queued mail
                    # that the ring cannot open means the old key is still needed.
                    failed += status != "dead"
                    continue
                result = await db.execute(
                    update(OutboxMessageRow)
                    .where(OutboxMessageRow.id == entry_id, OutboxMessageRow.payload == payload)
                    .values(payload=sealed)
                )
                done += int(result.rowcount)  # type: ignore[attr-defined]
            await db.commit()
        if len(rows) < RESEAL_BATCH:
            return done, current, failed
        after = rows[-1][0]


def main() -> None:
    app()
