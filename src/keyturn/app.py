"""Composition root: ``create_app(settings)`` wires stores, services and routers.

The lifespan builds the engine, the shared stores, the key set and the hash pool once per
process and closes them on shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from keyturn import __version__
from keyturn.api import problems
from keyturn.api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from keyturn.api.rest import auth, me, ops
from keyturn.config import Settings, load_settings
from keyturn.db.engine import create_engine, session_factory
from keyturn.db.unit_of_work import SqlUnitOfWork
from keyturn.infra.logging import configure_logging
from keyturn.infra.metrics import HASH_POOL_CAPACITY, HASH_POOL_IN_FLIGHT
from keyturn.infra.revocation import RevocationStore, build_revocation_store
from keyturn.security.aead import Aead
from keyturn.security.digests import KeyRing
from keyturn.security.passwords import Argon2Params, HashPool, PasswordHasher
from keyturn.services.access_tokens import AccessTokenService
from keyturn.services.auth import AuthService
from keyturn.services.credentials import PasswordPolicy
from keyturn.services.keys import KeyManager
from keyturn.services.ports import UnitOfWork
from keyturn.services.registry import Services
from keyturn.services.sessions import SessionService
from keyturn.services.users import UserService

log = structlog.get_logger(__name__)

DESCRIPTION = (
    "Keyturn: users, passwords, sessions and JWTs. Errors are RFC 9457 "
    "`application/problem+json` with a stable `code`."
)


def _swagger_assets() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


def build_services(
    settings: Settings, engine: AsyncEngine, revocations: RevocationStore, hash_pool: HashPool
) -> Services:
    """Wires every service from the settings (also used by the CLI)."""
    sessions = session_factory(engine)

    def uow_factory() -> UnitOfWork:
        return SqlUnitOfWork(sessions)

    ring = KeyRing.from_strings(settings.secret_key)
    keys = KeyManager(
        uow_factory=uow_factory,
        aead=Aead(ring),
        alg=settings.signing_alg,
        cache_seconds=settings.key_cache_seconds,
    )
    access_tokens = AccessTokenService(
        keys=keys,
        revocations=revocations,
        uow_factory=uow_factory,
        issuer=settings.issuer,
        audience=settings.audience,
        ttl=settings.access_token_ttl,
    )
    policy = PasswordPolicy(
        min_length=settings.password_min_length, max_length=settings.password_max_length
    )

    async def database_ready() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    checks = {"database": database_ready}
    if settings.redis_url:
        checks["redis"] = revocations.ping
    return Services(
        auth=AuthService(
            uow_factory=uow_factory,
            hash_pool=hash_pool,
            access_tokens=access_tokens,
            key_ring=ring,
            policy=policy,
            refresh_ttl=settings.refresh_token_ttl,
            idle_ttl=settings.session_idle_ttl,
            reuse_grace=settings.refresh_reuse_grace,
            require_verified_email=settings.email_verification_required,
        ),
        users=UserService(
            uow_factory=uow_factory, hash_pool=hash_pool, access_tokens=access_tokens, policy=policy
        ),
        sessions=SessionService(
            uow_factory=uow_factory,
            access_tokens=access_tokens,
            idle_ttl=settings.session_idle_ttl,
        ),
        access_tokens=access_tokens,
        keys=keys,
        hash_pool=hash_pool,
        readiness_checks=checks,
        email_verification_required=settings.email_verification_required,
    )


def build_hash_pool(settings: Settings) -> HashPool:
    hasher = PasswordHasher(
        Argon2Params(memory_kib=settings.argon2_memory_kib, time_cost=settings.argon2_time_cost)
    )
    return HashPool(hasher, workers=settings.hash_workers, queue_size=settings.hash_queue)


def create_app(settings: Settings) -> FastAPI:
    """Builds the ASGI application for ``settings``; nothing connects until startup."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url)
        revocations = build_revocation_store(settings.redis_url, prefix=settings.redis_prefix)
        hash_pool = build_hash_pool(settings)
        HASH_POOL_CAPACITY.set(hash_pool.capacity)
        HASH_POOL_IN_FLIGHT.set_function(lambda: hash_pool.in_flight)
        try:
            services = build_services(settings, engine, revocations, hash_pool)
            await services.keys.start()
            app.state.services = services
            log.info("started", env=settings.env, version=__version__)
            yield
        finally:
            hash_pool.close()
            await revocations.close()
            await engine.dispose()
            log.info("stopped")

    app = FastAPI(
        title="Keyturn",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    problems.install(app)
    app.include_router(auth.router)
    app.include_router(me.router)
    app.include_router(ops.router)
    if settings.show_docs:
        app.include_router(ops.docs_router(_swagger_assets()))
    # Added last = outermost: every answer, the 413 included, gets the id and headers.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, https_hsts=True)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (each worker process builds its own settings)."""
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
