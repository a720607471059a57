"""Composition root: ``create_app(settings)`` wires stores, services and routers.

The lifespan builds the engine, the shared stores, the key set and the hash pool once per
process and closes them on shutdown.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import structlog
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from keyturn import __version__
from keyturn.api import graphql, problems
from keyturn.api.hardening import install_hardening
from keyturn.api.oauth2 import authorize as oauth2_authorize
from keyturn.api.oauth2 import token as oauth2_token
from keyturn.api.oauth2 import token_management, userinfo
from keyturn.api.rest import (
    account,
    admin_clients,
    admin_roles,
    admin_users,
    api_keys,
    auth,
    consents,
    me,
    ops,
)
from keyturn.api.ui import HostedPages
from keyturn.config import Settings, load_settings
from keyturn.db.engine import create_engine, read_session_factory, session_factory
from keyturn.db.outbox import reseal_payloads
from keyturn.db.unit_of_work import SqlUnitOfWork
from keyturn.errors import StoreUnavailable
from keyturn.infra.dev_mailbox import DevMailbox, KeepingMailer
from keyturn.infra.mail import build_mailer
from keyturn.infra.rate_limit import build_rate_limiter
from keyturn.infra.revocation import build_revocation_store
from keyturn.infra.templates import MailTemplates
from keyturn.observability.logging import configure_logging
from keyturn.observability.metrics import (
    HASH_POOL_CAPACITY,
    HASH_POOL_IN_FLIGHT,
    RATE_LIMIT_FALLBACKS,
)
from keyturn.security.aead import Aead
from keyturn.security.digests import Digester, KeyRing
from keyturn.security.passwords import Argon2Params, HashPool, PasswordHasher
from keyturn.services.accounts import (
    AccessTokenService,
    AccountMail,
    AccountService,
    AuthService,
    CredentialGuard,
    Limits,
    LinkTemplates,
    OneTimeTokens,
    PasswordPolicy,
    RateLimiter,
    RevocationStore,
    SessionService,
    Throttle,
    TokenLifetimes,
    UserService,
)
from keyturn.services.admin import (
    AdminUserService,
    ApiKeyService,
    AuditChainService,
    AuditLogService,
    Authorizer,
    RoleService,
)
from keyturn.services.oauth2 import (
    AuthorizationService,
    BrowserSessions,
    ClientService,
    ConsentService,
    IdTokenHints,
    IdTokenSigner,
    OAuthCorsOrigins,
    OAuthTokenService,
    RpLogoutService,
    TokenService,
    UserInfoService,
    server_metadata,
)
from keyturn.services.outbox import Mailer, MailOutbox, OutboxMaintenance, OutboxWorker
from keyturn.services.periodic import every
from keyturn.services.ports import UnitOfWork
from keyturn.services.registry import Services
from keyturn.services.signing_keys import AdminKeyService, KeyManager

log = structlog.get_logger(__name__)

DESCRIPTION = (
    "Keyturn: users, passwords, sessions and JWTs. Errors are RFC 9457 "
    "`application/problem+json` with a stable `code`."
)


def _swagger_assets() -> Path:
    """The Swagger UI 5 dist (it reads OpenAPI 3.1) shipped inside ``swagger-ui-py``.

    Located without importing the package: its ``__init__`` wires web-framework handlers
    we do not use; only the static files (and their licence) are needed.
    """
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


@dataclass(frozen=True, slots=True)
class Adapters:
    """The outside world one process talks to; built in the lifespan, closed on exit."""

    engine: AsyncEngine
    revocations: RevocationStore
    limiter: RateLimiter
    mailer: Mailer
    hash_pool: HashPool

    async def close(self) -> None:
        self.hash_pool.close()
        await self.mailer.close()
        await self.limiter.close()
        await self.revocations.close()
        await self.engine.dispose()


def build_adapters(settings: Settings, *, mailbox: DevMailbox | None = None) -> Adapters:
    """The adapters; with ``mailbox`` (dev) every sent mail is also kept there."""
    mailer = build_mailer(
        settings.smtp_url, sender=settings.mail_from, timeout=settings.smtp_timeout
    )
    return Adapters(
        engine=create_engine(settings.database_url, pool_size=settings.database_pool_size),
        revocations=build_revocation_store(settings.redis_url, prefix=settings.redis_prefix),
        limiter=build_rate_limiter(
            settings.redis_url,
            prefix=settings.redis_prefix,
            on_fallback=lambda operation: RATE_LIMIT_FALLBACKS.labels(operation).inc(),
        ),
        mailer=mailer if mailbox is None else KeepingMailer(mailer, mailbox),
        hash_pool=build_hash_pool(settings),
    )


def _links(settings: Settings) -> LinkTemplates:
    def fill(template: str) -> str:
        return template.replace("{issuer}", settings.issuer)

    return LinkTemplates(
        verify_email=fill(settings.link_verify_email),
        reset_password=fill(settings.link_reset_password),
        confirm_email=fill(settings.link_confirm_email),
        login=f"{settings.issuer}/ui/login",
        forgot_password=f"{settings.issuer}/ui/forgot",
    )


def build_services(settings: Settings, adapters: Adapters) -> Services:
    """Wires every service from the settings (also used by the CLI)."""
    sessions = session_factory(adapters.engine)
    read_sessions = read_session_factory(adapters.engine)

    def uow_factory() -> UnitOfWork:
        return SqlUnitOfWork(sessions, read_sessions)

    def read_uow_factory() -> UnitOfWork:
        # For a service's pure reads (client lookup, user lookup before the hash, the
        # /v1/me reads): on PostgreSQL one round trip per SELECT, no BEGIN / ROLLBACK;
        # writes refused.
        return SqlUnitOfWork(sessions, read_sessions, read_only=True)

    ring = KeyRing.from_strings(settings.secret_key)
    aead = Aead(ring)

    async def reseal_outbox(progress: Callable[[int], None] | None = None) -> tuple[int, int, int]:
        return await reseal_payloads(sessions, aead, progress)

    keys = KeyManager(
        uow_factory=uow_factory,
        aead=aead,
        alg=settings.signing_alg,
        algorithms=settings.id_token_algs,
        cache_seconds=settings.key_cache_seconds,
        token_ttl=settings.access_token_ttl,
        rotation_days=settings.key_rotation_days,
        publish_ahead_seconds=settings.key_publish_ahead_seconds,
        deny_list=adapters.revocations,
    )
    access_tokens = AccessTokenService(
        keys=keys,
        revocations=adapters.revocations,
        uow_factory=uow_factory,
        issuer=settings.issuer,
        audience=settings.audience,
        ttl=settings.access_token_ttl,
    )
    policy = PasswordPolicy(
        min_length=settings.password_min_length, max_length=settings.password_max_length
    )
    outbox = MailOutbox(
        templates=MailTemplates(
            brand_name=settings.brand_name,
            public_url=settings.issuer,
            brand_color=settings.brand_color,
            logo_url=settings.brand_logo_url,
        ),
        aead=aead,
        message_id_domain=urlsplit(settings.issuer).hostname or "localhost",
    )
    mail = AccountMail(
        outbox=outbox,
        links=_links(settings),
        limiter=adapters.limiter,
        address_digester=Digester(ring, "mail-address"),
        per_address_per_hour=settings.limit_mails_per_address_per_hour,
        per_address_all_networks_per_hour=settings.limit_mails_per_address_all_networks_per_hour,
        ipv6_prefix=settings.limit_ipv6_prefix,
    )
    tokens = OneTimeTokens(key_ring=ring)
    hash_pool = adapters.hash_pool
    guard = CredentialGuard(
        throttle=Throttle(
            limiter=adapters.limiter,
            digester=Digester(ring, "throttle-account"),
            limits=Limits(
                failures_per_account_ip=settings.limit_failures_per_account_ip,
                failures_per_account=settings.limit_failures_per_account,
                ip_per_minute=settings.limit_ip_per_minute,
                signups_per_ip_per_hour=settings.limit_signups_per_ip_per_hour,
                ipv6_prefix=settings.limit_ipv6_prefix,
            ),
        ),
        uow_factory=uow_factory,
        mail=mail,
        lock_seconds=settings.lock_seconds,
    )

    sessions_service = SessionService(
        uow_factory=uow_factory,
        read_uow_factory=read_uow_factory,
        access_tokens=access_tokens,
        idle_ttl=settings.session_idle_ttl,
    )
    authorizer = Authorizer(uow_factory=uow_factory)

    async def database_ready() -> None:
        async with adapters.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    checks = {"database": database_ready}
    if settings.redis_url:
        checks["redis"] = adapters.revocations.ping
    auth = AuthService(
        uow_factory=uow_factory,
        read_uow_factory=read_uow_factory,
        hash_pool=hash_pool,
        access_tokens=access_tokens,
        key_ring=ring,
        policy=policy,
        refresh_ttl=settings.refresh_token_ttl,
        idle_ttl=settings.session_idle_ttl,
        reuse_grace=settings.refresh_reuse_grace,
        require_verified_email=settings.email_verification_required,
        tokens=tokens,
        mail=mail,
        verify_ttl=settings.verify_email_ttl,
        guard=guard,
    )
    id_tokens = IdTokenSigner(keys=keys, algorithms=settings.id_token_algs)
    id_token_hints = IdTokenHints(
        keys=keys,
        issuer=settings.issuer,
        algorithms=settings.id_token_algs,
        max_age=settings.refresh_token_ttl,
    )
    authorizations = AuthorizationService(
        uow_factory=uow_factory, key_ring=ring, issuer=settings.issuer, hints=id_token_hints
    )
    oauth_tokens = OAuthTokenService(
        uow_factory=uow_factory,
        keys=keys,
        access_tokens=access_tokens,
        key_ring=ring,
        issuer=settings.issuer,
        idle_ttl=settings.session_idle_ttl,
        read_uow_factory=read_uow_factory,
    )
    account = AccountService(
        uow_factory=uow_factory,
        read_uow_factory=read_uow_factory,
        hash_pool=hash_pool,
        access_tokens=access_tokens,
        tokens=tokens,
        mail=mail,
        policy=policy,
        lifetimes=TokenLifetimes(
            verify_email=settings.verify_email_ttl,
            reset_password=settings.reset_password_ttl,
            email_change=settings.email_change_ttl,
        ),
        guard=guard,
        reauthentication_max_age=settings.reauthentication_max_age,
    )
    return Services(
        authorizations=authorizations,
        tokens=TokenService(
            uow_factory=uow_factory,
            auth=auth,
            authorizations=authorizations,
            access_tokens=access_tokens,
            id_tokens=id_tokens,
            guard=guard,
            issuer=settings.issuer,
        ),
        server_metadata=server_metadata(settings.issuer, id_token_algs=settings.id_token_algs),
        auth=auth,
        browser=BrowserSessions(
            uow_factory=uow_factory,
            auth=auth,
            access_tokens=access_tokens,
            key_ring=ring,
            idle_ttl=settings.session_idle_ttl,
        ),
        users=UserService(
            uow_factory=uow_factory,
            read_uow_factory=read_uow_factory,
            hash_pool=hash_pool,
            access_tokens=access_tokens,
            policy=policy,
            mail=mail,
            guard=guard,
        ),
        sessions=sessions_service,
        authorizer=authorizer,
        roles=RoleService(uow_factory=uow_factory, authorizer=authorizer),
        admin_users=AdminUserService(
            uow_factory=uow_factory,
            authorizer=authorizer,
            access_tokens=access_tokens,
            sessions=sessions_service,
            tokens=tokens,
            mail=mail,
            guard=guard,
            set_password_ttl=settings.verify_email_ttl,
        ),
        audit_log=AuditLogService(uow_factory=uow_factory, authorizer=authorizer),
        audit_chain=AuditChainService(
            uow_factory=uow_factory, retention_days=settings.audit_retention_days
        ),
        admin_keys=AdminKeyService(keys=keys, authorizer=authorizer, uow_factory=uow_factory),
        api_keys=ApiKeyService(
            uow_factory=uow_factory, authorizer=authorizer, guard=guard, key_ring=ring
        ),
        clients=ClientService(
            uow_factory=uow_factory,
            read_uow_factory=read_uow_factory,
            authorizer=authorizer,
            guard=guard,
            key_ring=ring,
            id_token_algs=settings.id_token_algs,
            access_tokens=access_tokens,
        ),
        oauth_tokens=oauth_tokens,
        consents=ConsentService(
            uow_factory=uow_factory, read_uow_factory=read_uow_factory, access_tokens=access_tokens
        ),
        oauth_cors=OAuthCorsOrigins(uow_factory=uow_factory),
        rp_logout=RpLogoutService(uow_factory=uow_factory, hints=id_token_hints),
        userinfo=UserInfoService(uow_factory=uow_factory, tokens=oauth_tokens),
        account=account,
        access_tokens=access_tokens,
        throttle=guard.throttle,
        keys=keys,
        id_tokens=id_tokens,
        hash_pool=hash_pool,
        outbox=outbox,
        outbox_worker=OutboxWorker(
            uow_factory=uow_factory,
            mailer=adapters.mailer,
            aead=aead,
            # The lease outlives the slowest send, or a second worker would send it again.
            lease_seconds=max(60, int(settings.smtp_timeout * 4)),
            # Account requests (forgot, resend, email change) are resolved here.
            resolver=account,
        ),
        outbox_maintenance=OutboxMaintenance(uow_factory=uow_factory, resealer=reseal_outbox),
        readiness_checks=checks,
        email_verification_required=settings.email_verification_required,
    )


def build_hash_pool(settings: Settings) -> HashPool:
    hasher = PasswordHasher(
        Argon2Params(memory_kib=settings.argon2_memory_kib, time_cost=settings.argon2_time_cost)
    )
    return HashPool(hasher, workers=settings.hash_workers, queue_size=settings.hash_queue)


async def _restore_deny_list(services: Services) -> None:
    try:
        await services.access_tokens.restore_deny_list()
    except StoreUnavailable:
        # Redis is down at start: checks answer from the database and restore later.
        log.warning("deny_list_restore_deferred")


def create_app(settings: Settings) -> FastAPI:
    """Builds the ASGI application for ``settings``; nothing connects until startup."""

    # Dev keeps a copy of every mail for /ui/dev/mail; production never does (tokens).
    mailbox = None if settings.is_production else DevMailbox()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        adapters = build_adapters(settings, mailbox=mailbox)
        HASH_POOL_CAPACITY.set(adapters.hash_pool.capacity)
        HASH_POOL_IN_FLIGHT.set_function(lambda: adapters.hash_pool.in_flight)
        stop = asyncio.Event()
        worker: asyncio.Task[None] | None = None
        key_schedule: asyncio.Task[None] | None = None
        code_pruning: asyncio.Task[None] | None = None
        services_ready: Services | None = None
        try:
            services = build_services(settings, adapters)
            await services.keys.start()
            await _restore_deny_list(services)
            app.state.services = services
            services_ready = services
            if settings.outbox_worker == "inline":
                worker = asyncio.create_task(
                    services.outbox_worker.run(
                        services.outbox, poll_seconds=settings.outbox_poll_seconds, stop=stop
                    )
                )
            # Rotates signing keys when due and keeps this process's key cache fresh.
            key_schedule = asyncio.create_task(
                services.keys.run_schedule(
                    stop=stop, check_seconds=settings.key_rotation_check_seconds
                )
            )
            code_pruning = asyncio.create_task(
                every(
                    settings.code_prune_seconds,
                    stop,
                    services.authorizations.prune_codes,
                    "authorization_code_pruning_failed",
                )
            )
            log.info("started", env=settings.env, version=__version__, issuer=settings.issuer)
            yield
        finally:
            stop.set()
            if worker is not None:
                services.outbox.wake()
                # A send in progress finishes; what is left stays queued for the next start.
                await worker
            if key_schedule is not None:
                await key_schedule
            if code_pruning is not None:
                await code_pruning
            if services_ready is not None:
                # The last batch of API-key "last used" times, before the engine closes.
                await services_ready.api_keys.close()
            await adapters.close()
            log.info("stopped")

    app = FastAPI(
        title="Keyturn",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # In production the schema is published only when docs are enabled.
        openapi_url="/openapi.json" if settings.show_docs else None,
        # Starlette's trailing-slash redirect is an absolute URL built from the request's
        # Host header (GET /ui/login/ with Host: evil.example went to evil.example):
        # every path is served exactly as documented, and /ui/login/ is a 404.
        redirect_slashes=False,
    )
    problems.install(app)
    app.include_router(auth.router)
    app.include_router(account.router)
    app.include_router(admin_users.router)
    app.include_router(admin_roles.router)
    app.include_router(admin_clients.router)
    app.include_router(me.router)
    app.include_router(api_keys.router)
    app.include_router(consents.router)
    app.include_router(ops.router)
    app.include_router(oauth2_token.router)
    app.include_router(token_management.router)
    app.include_router(userinfo.router)
    # GraphQL is described by its own schema, not by the OpenAPI document.
    app.include_router(graphql.build_router(settings), include_in_schema=False)
    if settings.show_docs:
        app.include_router(ops.docs_router(_swagger_assets()))
    # Hosted pages (/ui/): HTML for browsers, not part of the OpenAPI document.
    pages = HostedPages(settings, mailbox=mailbox)
    app.state.hosted_pages = pages
    app.include_router(pages.router)
    app.include_router(pages.landing_router)
    app.include_router(oauth2_authorize.build_router(pages.kit))
    app.include_router(pages.oauth_router)
    # Edge middleware (client address, headers, CORS, guards, body cap) in one ordered place.
    install_hardening(app, settings)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (each worker process builds its own settings)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_renderer)
    return create_app(settings)
