"""Composition root: ``create_app(settings)`` wires stores, services and routers.

The lifespan builds the engine, the shared stores, the key set and the hash pool once per
process and closes them on shutdown.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import structlog
from fastapi import FastAPI
from sqlalchemy import text

from keyturn import __version__
from keyturn.adapters import Adapters, build_adapters
from keyturn.api import problems
from keyturn.api.http.hardening import install_hardening
from keyturn.api.lean import install_lean_edge
from keyturn.api.routers import include_routers
from keyturn.config import Settings, load_settings
from keyturn.db.audit import audit_backlog
from keyturn.db.engine import (
    read_session_factory,
    session_factory,
)
from keyturn.db.outbox import outbox_backlog, reseal_payloads
from keyturn.db.sign_in import SqlSignInStore
from keyturn.db.unit_of_work import SqlUnitOfWork
from keyturn.errors import StoreUnavailable
from keyturn.infra.dev_mailbox import DevMailbox
from keyturn.infra.templates import MailTemplates
from keyturn.observability.logging import configure_logging
from keyturn.observability.metrics import (
    HASH_POOL_CAPACITY,
    HASH_POOL_IN_FLIGHT,
)
from keyturn.observability.startup import pool_reader, start_observability
from keyturn.observability.tracing import install_tracing, trace_storage
from keyturn.security.aead import Aead
from keyturn.security.digests import KeyRing
from keyturn.services.accounts import AccountServices, UserCache
from keyturn.services.accounts.wiring import build_accounts
from keyturn.services.admin.wiring import AdminServices, build_admin
from keyturn.services.mfa import MfaServices
from keyturn.services.mfa.wiring import build_mfa
from keyturn.services.oauth2.wiring import OAuth2Services, build_oauth2
from keyturn.services.outbox import MailOutbox, OutboxMaintenance, OutboxWorker
from keyturn.services.outbox.wiring import build_outbox, build_outbox_worker
from keyturn.services.periodic import every
from keyturn.services.ports import UnitOfWork, UnitOfWorkFactory
from keyturn.services.registry import HealthCheck, Services
from keyturn.services.signing_keys import KeyManager
from keyturn.services.signing_keys.wiring import build_signing_keys

log = structlog.get_logger(__name__)

DESCRIPTION = (
    "Keyturn: users, passwords, sessions and JWTs. Errors are RFC 9457 "
    "`application/problem+json` with a stable `code`."
)


@dataclass(frozen=True)
class _UnitsOfWork:
    """The unit-of-work factories (``services/ports.py`` says what each may do) and the
    user cache that every committed change of a user empties on every process."""

    uow_factory: UnitOfWorkFactory
    read_uow_factory: UnitOfWorkFactory
    profiles: UserCache


def _uow_factories(adapters: Adapters) -> _UnitsOfWork:
    sessions = session_factory(adapters.engine)
    read_sessions = read_session_factory(adapters.engine)

    def read_uow_factory() -> UnitOfWork:
        # For a service's pure reads (client lookup, the second step's user check, the
        # /v1/me reads): on PostgreSQL one round trip per SELECT, no BEGIN / ROLLBACK;
        # writes refused.
        return SqlUnitOfWork(sessions, read_sessions, read_only=True)

    profiles = UserCache(changes=adapters.user_changes, read_uow_factory=read_uow_factory)

    def uow_factory() -> UnitOfWork:
        return SqlUnitOfWork(sessions, read_sessions, users_changed=profiles.publish_users)

    return _UnitsOfWork(uow_factory, read_uow_factory, profiles)


def _readiness_checks(settings: Settings, adapters: Adapters) -> dict[str, HealthCheck]:
    async def database_ready() -> None:
        async with adapters.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    checks: dict[str, HealthCheck] = {"database": database_ready}
    if settings.redis_url:
        checks["redis"] = adapters.revocations.ping
    return checks


def _mail_templates(settings: Settings) -> MailTemplates:
    return MailTemplates(
        brand_name=settings.brand_name,
        public_url=settings.issuer,
        brand_color=settings.brand_color,
        logo_url=settings.brand_logo_url,
    )


def build_services(settings: Settings, adapters: Adapters) -> Services:
    """Wires every service from the settings (also used by the CLI): each services package
    builds its own from the adapters it needs."""
    units = _uow_factories(adapters)
    uow_factory, read_uow_factory, profiles = (
        units.uow_factory,
        units.read_uow_factory,
        units.profiles,
    )
    ring = KeyRing.from_strings(settings.secret_key)
    aead = Aead(ring)
    keys = build_signing_keys(
        settings,
        uow_factory=uow_factory,
        aead=aead,
        deny_list=adapters.revocations,
        key_changes=adapters.key_changes,
    )
    outbox = build_outbox(settings, templates=_mail_templates(settings), aead=aead)
    accounts = build_accounts(
        settings,
        uow_factory=uow_factory,
        read_uow_factory=read_uow_factory,
        sign_in=SqlSignInStore(adapters.engine),
        key_ring=ring,
        keys=keys,
        outbox=outbox,
        limiter=adapters.limiter,
        revocations=adapters.revocations,
        hash_pool=adapters.hash_pool,
        profiles=profiles,
    )
    mfa = build_mfa(
        settings,
        uow_factory=uow_factory,
        read_uow_factory=read_uow_factory,
        key_ring=ring,
        aead=aead,
        accounts=accounts,
        ceremonies=adapters.ceremonies,
    )
    admin = build_admin(
        settings, uow_factory=uow_factory, key_ring=ring, keys=keys, accounts=accounts
    )
    oauth2 = build_oauth2(
        settings,
        uow_factory=uow_factory,
        read_uow_factory=read_uow_factory,
        key_ring=ring,
        keys=keys,
        accounts=accounts,
        authorizer=admin.authorizer,
        client_changes=adapters.client_changes,
    )
    jobs = _outbox_jobs(settings, adapters, uow_factory, aead, accounts)
    return _registry(settings, adapters, accounts, admin, oauth2, mfa, keys, outbox, jobs)


def _registry(
    settings: Settings,
    adapters: Adapters,
    accounts: AccountServices,
    admin: AdminServices,
    oauth2: OAuth2Services,
    mfa: MfaServices,
    keys: KeyManager,
    outbox: MailOutbox,
    jobs: tuple[OutboxWorker, OutboxMaintenance],
) -> Services:
    """The one ``Services`` the edge and the CLI see, from what each package built."""
    worker, maintenance = jobs
    return Services(
        auth=accounts.auth,
        signup=accounts.signup,
        users=accounts.users,
        sessions=accounts.sessions,
        account=accounts.account,
        account_requests=accounts.account_requests,
        access_tokens=accounts.access_tokens,
        throttle=accounts.guard.throttle,
        hash_pool=adapters.hash_pool,
        authorizer=admin.authorizer,
        roles=admin.roles,
        admin_users=admin.users,
        audit_log=admin.audit_log,
        audit_chain=admin.audit_chain,
        admin_keys=admin.keys,
        api_keys=admin.api_keys,
        authorizations=oauth2.authorizations,
        tokens=oauth2.tokens,
        server_metadata=oauth2.server_metadata,
        browser=oauth2.browser,
        clients=oauth2.clients,
        oauth_tokens=oauth2.token_management,
        consents=oauth2.consents,
        oauth_cors=oauth2.cors,
        rp_logout=oauth2.rp_logout,
        userinfo=oauth2.userinfo,
        id_tokens=oauth2.id_tokens,
        keys=keys,
        outbox=outbox,
        outbox_worker=worker,
        outbox_maintenance=maintenance,
        readiness_checks=_readiness_checks(settings, adapters),
        email_verification_required=settings.email_verification_required,
        mfa=mfa,
        audit_batch=oauth2.audit_batch,
    )


def _outbox_jobs(
    settings: Settings,
    adapters: Adapters,
    uow_factory: UnitOfWorkFactory,
    aead: Aead,
    accounts: AccountServices,
) -> tuple[OutboxWorker, OutboxMaintenance]:
    """The delivery worker and the operator's maintenance (re-sealing payloads)."""
    worker = build_outbox_worker(
        settings,
        uow_factory=uow_factory,
        mailer=adapters.mailer,
        aead=aead,
        resolver=accounts.account_requests,
    )
    sessions = session_factory(adapters.engine)

    async def reseal(progress: Callable[[int], None] | None = None) -> tuple[int, int, int]:
        return await reseal_payloads(sessions, aead, progress)

    return worker, OutboxMaintenance(uow_factory=uow_factory, resealer=reseal)


async def _restore_deny_list(services: Services) -> None:
    try:
        await services.access_tokens.restore_deny_list()
    except StoreUnavailable:
        # Redis is down at start: checks answer from the database and restore later.
        log.warning("deny_list_restore_deferred")


def _background(
    settings: Settings, services: Services, stop: asyncio.Event
) -> list[asyncio.Task[None]]:
    """The process's periodic work, until ``stop``."""
    tasks = []
    if settings.outbox_worker == "inline":
        tasks.append(
            asyncio.create_task(
                services.outbox_worker.run(
                    services.outbox, poll_seconds=settings.outbox_poll_seconds, stop=stop
                )
            )
        )
    # Rotates signing keys when due and keeps this process's key cache fresh.
    tasks.append(
        asyncio.create_task(
            services.keys.run_schedule(stop=stop, check_seconds=settings.key_rotation_check_seconds)
        )
    )
    prune = settings.code_prune_seconds
    periodic = (
        (prune, services.authorizations.prune_codes, "authorization_code_pruning_failed"),
        # TOTP enrolments never confirmed (issue 15): their sealed seeds do not linger.
        (prune, services.mfa.factors.prune_pending, "mfa_pending_pruning_failed"),
        # Chains the rows requests inserted; one process at a time wins the sealer lock.
        (settings.audit_seal_seconds, services.audit_chain.seal, "audit_sealing_failed"),
    )
    tasks.extend(
        asyncio.create_task(every(seconds, stop, job, failure))
        for seconds, job, failure in periodic
    )
    tasks.append(services.audit_batch.start(stop))  # client_credentials' audit rows
    return tasks


def _observe(
    settings: Settings, adapters: Adapters, services: Services
) -> Awaitable[Callable[[], Awaitable[None]]]:
    """Scrape-time metric sources, the metrics listener and storage tracing."""
    engine = adapters.engine
    return start_observability(
        listener=settings,
        pool=pool_reader(engine.pool),
        outbox_backlog=functools.partial(outbox_backlog, session_factory(engine)),
        audit_backlog=functools.partial(audit_backlog, session_factory(engine)),
        readiness_checks=services.readiness_checks,
        storage_tracing=functools.partial(trace_storage, engine.sync_engine)
        if settings.otel_enabled
        else None,
    )


def _lifespan(
    settings: Settings, mailbox: DevMailbox | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        adapters = build_adapters(settings, mailbox=mailbox)
        HASH_POOL_CAPACITY.set(adapters.hash_pool.capacity)
        HASH_POOL_IN_FLIGHT.set_function(lambda: adapters.hash_pool.in_flight)
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        started: Services | None = None
        stop_observing: Callable[[], Awaitable[None]] | None = None
        try:
            services = build_services(settings, adapters)
            await services.keys.start()
            await _restore_deny_list(services)
            # The client, user and kid caches are bypassed until their subscriptions are
            # confirmed; all subscribe at once (each waits up to 2 s for a silent Redis).
            await asyncio.gather(*(feed.start() for feed in adapters.change_feeds))
            stop_observing = await _observe(settings, adapters, services)
            app.state.services = started = services
            tasks = _background(settings, services, stop)
            log.info("started", env=settings.env, version=__version__, issuer=settings.issuer)
            yield
        finally:
            stop.set()
            if started is not None:
                started.outbox.wake()
            # A send in progress finishes; what is left stays queued for the next start.
            for task in tasks:
                await task
            if started is not None:
                # The last batch of API-key "last used" times, before the engine closes.
                await started.api_keys.close()
            if stop_observing is not None:
                await stop_observing()
            await adapters.close()
            log.info("stopped")

    return lifespan


def create_app(settings: Settings, *, lean_edge: bool = True) -> FastAPI:
    """Builds the ASGI application for ``settings``; nothing connects until startup.

    ``lean_edge=False`` serves the hot routes through FastAPI too (``keyturn.api.lean``):
    the reference the lean routes' answers are compared with, not a deployment setting.
    """
    # Dev keeps a copy of every mail for /ui/dev/mail; production never does (tokens).
    mailbox = None if settings.is_production else DevMailbox()
    app = FastAPI(
        title="Keyturn",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan(settings, mailbox),
        docs_url=None,
        redoc_url=None,
        # In production the schema is published only when docs are enabled.
        openapi_url="/openapi.json" if settings.show_docs else None,
        # Starlette's trailing-slash redirect is an absolute URL built from the request's
        # Host header (GET /ui/login/ with Host: evil.example went to evil.example):
        # every path is served exactly as documented, and /ui/login/ is a 404.
        redirect_slashes=False,
        # Tracing is opt-in and ours (KEYTURN_OTEL_ENABLED), not FastAPI's built-in telemetry.
        telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False},
    )
    if settings.otel_enabled:
        install_tracing(app)
    problems.install(app)
    described = include_routers(app, settings, mailbox)
    # Edge middleware (client address, headers, CORS, guards, body cap) in one ordered place.
    lean_edge_layers = install_hardening(app, settings)
    if lean_edge:
        # Last: the lean lane goes outside the edge middleware installed above.
        install_lean_edge(app, twins=described, edge=lean_edge_layers)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (each worker process builds its own settings)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_renderer)
    return create_app(settings)
