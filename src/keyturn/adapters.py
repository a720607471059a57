"""The outside world one process talks to: engine, shared stores, mailer, hash pool.

Built by the app's lifespan and by the CLI commands that run services; closed on exit.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from keyturn.config import Settings
from keyturn.db.engine import engine_for
from keyturn.infra.ceremonies import (
    MemoryCeremonyStore,
    RedisCeremonyStore,
    build_ceremony_store,
)
from keyturn.infra.dev_mailbox import DevMailbox, KeepingMailer
from keyturn.infra.invalidation import (
    KEYS_CHANNEL,
    USERS_CHANNEL,
    MemoryChangeFeed,
    RedisChangeFeed,
    build_change_feed,
)
from keyturn.infra.mail import build_mailer
from keyturn.infra.rate_limit_fallback import build_rate_limiter
from keyturn.infra.revocation import build_revocation_store
from keyturn.observability.metrics import RATE_LIMIT_FALLBACKS
from keyturn.security.passwords import Argon2Params, HashPool, PasswordHasher
from keyturn.services.accounts import RateLimiter, RevocationStore
from keyturn.services.outbox import Mailer

__all__ = ["Adapters", "build_adapters", "build_hash_pool"]


@dataclass(frozen=True, slots=True)
class Adapters:
    """The outside world one process talks to; built in the lifespan, closed on exit."""

    engine: AsyncEngine
    revocations: RevocationStore
    limiter: RateLimiter
    mailer: Mailer
    hash_pool: HashPool
    # WebAuthn challenges (issue 15); closed like the other stores.
    ceremonies: MemoryCeremonyStore | RedisCeremonyStore
    # OAuth client changes announced to every process (issue 18: the client cache).
    client_changes: MemoryChangeFeed | RedisChangeFeed
    # User changes, for the profile cache behind GET /v1/me (issue 18).
    user_changes: MemoryChangeFeed | RedisChangeFeed
    # Signing-key revocations, for each process's memory of the kid deny-list (issue 18).
    key_changes: MemoryChangeFeed | RedisChangeFeed

    @property
    def change_feeds(self) -> tuple[MemoryChangeFeed | RedisChangeFeed, ...]:
        return (self.client_changes, self.user_changes, self.key_changes)

    async def close(self) -> None:
        self.hash_pool.close()
        for feed in self.change_feeds:
            await feed.close()
        await self.ceremonies.close()
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
        engine=engine_for(settings),
        revocations=build_revocation_store(settings.redis_url, prefix=settings.redis_prefix),
        limiter=build_rate_limiter(
            settings.redis_url,
            prefix=settings.redis_prefix,
            on_fallback=lambda operation: RATE_LIMIT_FALLBACKS.labels(operation).inc(),
        ),
        mailer=mailer if mailbox is None else KeepingMailer(mailer, mailbox),
        hash_pool=build_hash_pool(settings),
        ceremonies=build_ceremony_store(settings.redis_url, prefix=settings.redis_prefix),
        client_changes=build_change_feed(settings.redis_url, prefix=settings.redis_prefix),
        user_changes=build_change_feed(
            settings.redis_url, prefix=settings.redis_prefix, channel=USERS_CHANNEL
        ),
        key_changes=build_change_feed(
            settings.redis_url, prefix=settings.redis_prefix, channel=KEYS_CHANNEL
        ),
    )


def build_hash_pool(settings: Settings) -> HashPool:
    hasher = PasswordHasher(
        Argon2Params(memory_kib=settings.argon2_memory_kib, time_cost=settings.argon2_time_cost)
    )
    return HashPool(hasher, workers=settings.hash_workers, queue_size=settings.hash_queue)
