"""``keyturn`` commands. Unknown commands and flags exit non-zero (typer/click default)."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import ssl
from collections.abc import Callable
from importlib.metadata import version
from typing import Annotated, Any, cast

import typer
import uvicorn
from uvicorn.config import STARTUP_FAILURE

from keyturn.adapters import build_adapters
from keyturn.app import build_services, create_app
from keyturn.cli import maintenance
from keyturn.cli.banner import start_banner
from keyturn.cli.common import ensure_schema, settings_or_exit
from keyturn.cli.drain import DrainingServer
from keyturn.cli.healthcheck import healthcheck
from keyturn.cli.http_guard import GuardedHttpToolsProtocol
from keyturn.cli.users import users_app
from keyturn.config import ConfigError, Settings
from keyturn.db.migrate import upgrade
from keyturn.observability.logging import configure_logging
from keyturn.services.periodic import every

HELP = "Keyturn identity service."

# rich_markup_mode=None: typer's rich help labels every flag "<bool>"; click's plain help
# shows flags as flags (--force) and options with their value (--port <int>).
app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None, help=HELP)
app.add_typer(users_app, name="users")
app.add_typer(maintenance.outbox_app, name="outbox")
app.add_typer(maintenance.audit_app, name="audit")
app.add_typer(maintenance.keys_app, name="keys")
app.add_typer(maintenance.secret_app, name="secret")
app.command()(healthcheck)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"keyturn {version('keyturn')}")
        raise typer.Exit


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """Keyturn identity service."""


@app.command()
def migrate() -> None:
    """Apply every pending database migration and say which ones."""
    settings = settings_or_exit()
    cache = settings.database_statement_cache
    done = asyncio.run(upgrade(settings.database_url, statement_cache=cache))
    typer.echo(done.summary())


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
    settings = settings_or_exit()
    # Persist the derived dev secret and database so every worker reads the same; a value
    # read from KEYTURN_<NAME>_FILE stays there (each worker reads the file again).
    for name, value in (
        ("SECRET_KEY", ",".join(settings.secret_key)),
        ("DATABASE_URL", settings.database_url),
    ):
        if f"KEYTURN_{name}_FILE" not in os.environ:
            os.environ.setdefault(f"KEYTURN_{name}", value)
    configure_logging(settings.log_level, settings.log_renderer)
    try:
        # The edge checks its own settings (trusted proxies, CORS origins) when the app is
        # built; build it once here so a refusal is one line and exit 2, not a traceback
        # from every worker.
        create_app(settings)
    except ConfigError as exc:
        typer.echo(f"configuration refused: {exc}", err=True)
        raise typer.Exit(2) from exc
    ensure_schema(settings)
    if not settings.is_production:
        typer.echo(start_banner(settings), err=True)
    # uvicorn re-raises the SIGTERM/SIGINT it handled once shutdown is done; a no-op
    # handler turns that into a normal return, so a clean stop exits 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    # httptools with a header size cap and header read timeout (see http_guard); a
    # partial, not a closure, so it pickles into every worker process.
    protocol = functools.partial(
        GuardedHttpToolsProtocol,
        max_header_bytes=settings.max_header_bytes,
        header_timeout=settings.header_timeout,
    )
    options: dict[str, Any] = {
        "app": "keyturn.app:create_app_from_env",
        "factory": True,
        "http": cast("type[asyncio.Protocol]", protocol),
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "ssl_certfile": str(settings.tls_cert_file) if settings.tls_cert_file else None,
        "ssl_keyfile": str(settings.tls_key_file) if settings.tls_key_file else None,
        "ssl_context_factory": tls_context if settings.tls_cert_file else None,
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "proxy_headers": False,
        "timeout_graceful_shutdown": 30,
    }
    if settings.workers > 1:
        # The workers share one listening socket: no drain (see cli/drain.py).
        uvicorn.run(**options)
        return
    # One process: its stop first empties the accept queue (cli/drain.py).
    server = DrainingServer(uvicorn.Config(**options))
    server.run()
    if not server.started:
        raise typer.Exit(STARTUP_FAILURE)


@app.command()
def worker(
    poll_seconds: Annotated[
        float | None, typer.Option(help="Seconds between polls (KEYTURN_OUTBOX_POLL_SECONDS)")
    ] = None,
) -> None:
    """Deliver queued mail and seal the audit log until SIGTERM (KEYTURN_OUTBOX_WORKER=off
    on the API servers then leaves the mail to this process)."""
    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.log_renderer)
    ensure_schema(settings)
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
        sealer = every(
            settings.audit_seal_seconds, stop, services.audit_chain.seal, "audit_sealing_failed"
        )
        await asyncio.gather(
            services.outbox_worker.run(services.outbox, poll_seconds=poll_seconds, stop=stop),
            sealer,
        )
    finally:
        await adapters.close()


def main() -> None:
    app()
