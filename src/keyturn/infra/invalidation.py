"""Changes announced to every process: the feeds behind the per-process caches.

``services/change_cache.py`` keeps entries per process (OAuth clients on the channel
``clients:changed``, user profiles on ``users:changed``, revoked signing-key kids on
``keys:revoked``) and trusts an entry only while
its feed says it hears every change (``ChangeFeed`` / ``ChangeListener``, defined
with the cache). Two implementations:

* ``MemoryChangeFeed`` - one process (the embedded default): a change reaches the
  listeners of this process directly, and the feed is always live.
* ``RedisChangeFeed`` - every worker and replica: Redis pub/sub on one channel under
  the key prefix. Pub/sub keeps no history (a subscriber that is away misses messages),
  so the subscriber fails closed: the listeners are told ``lost`` on any error, and
  ``live`` only once SUBSCRIBE is confirmed again on a fresh connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from keyturn.errors import StoreUnavailable
from keyturn.infra.redis_client import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_SOCKET_TIMEOUT,
    RedisAdapter,
    create_redis_client,
    store_errors,
)

__all__ = [
    "CLIENTS_CHANNEL",
    "KEYS_CHANNEL",
    "USERS_CHANNEL",
    "MemoryChangeFeed",
    "RedisChangeFeed",
    "build_change_feed",
]

log = structlog.get_logger(__name__)

# A quiet channel is pinged this often (seconds) ...
HEARTBEAT_SECONDS = 1.0
# ... and declared lost after this long without any answer: a half-open TCP connection
# (a partition without RST) would otherwise look live while messages never arrive.
SILENCE_SECONDS = 3.0
# Reconnect backoff after a loss (seconds): doubles up to the cap.
_BACKOFF_FIRST = 0.05
_BACKOFF_CAP = 2.0
_PING = b"keyturn-changes"
# How long a starting process waits for its first SUBSCRIBE (then starts bypassed).
START_WAIT_SECONDS = 2.0


class ChangeListener(Protocol):
    """``services.change_cache.ChangeListener``, restated (infra sits below services)."""

    def changed(self, key: str) -> None: ...
    def lost(self) -> None: ...
    def live(self) -> None: ...


CLIENTS_CHANNEL = "clients:changed"
USERS_CHANNEL = "users:changed"
KEYS_CHANNEL = "keys:revoked"

# Every in-process feed's listeners, by channel: a process may run more than one app (the
# CLI beside a server, tests with two apps on one database), and a change must reach them
# all.
_IN_PROCESS: dict[str, list[ChangeListener]] = {}


class MemoryChangeFeed:
    """One process: a published change reaches every listener of this process at once."""

    def __init__(self, channel: str = CLIENTS_CHANNEL) -> None:
        self._listeners: list[ChangeListener] = []
        self._everyone = _IN_PROCESS.setdefault(channel, [])

    def attach(self, listener: ChangeListener) -> None:
        """See ``ChangeFeed.attach``; nothing can be missed in-process: live at once."""
        self._listeners.append(listener)
        self._everyone.append(listener)
        listener.live()

    async def publish(self, key: str) -> None:
        """See ``ChangeFeed.publish``."""
        for listener in tuple(self._everyone):
            listener.changed(key)

    async def start(self) -> None:
        """Nothing to subscribe to."""

    async def close(self) -> None:
        """Detaches this feed's listeners (a closed app hears nothing more)."""
        for listener in self._listeners:
            listener.lost()
            with contextlib.suppress(ValueError):
                self._everyone.remove(listener)
        self._listeners.clear()


class RedisChangeFeed(RedisAdapter):
    """Pub/sub on ``<prefix><channel>``; the message is the changed key.

    Args:
        client: Publishes (the usual client: one quick retry).
        subscriber: A client for the subscription only, built with NO retries: redis-py
            silently reconnects and re-subscribes a pub/sub connection on a retry, which
            would hide the gap in which messages were lost. Every failure must reach
            ``_run`` so the listeners hear ``lost``.
        prefix: Key namespace (the channel lives under it, like every key).
        channel: What changes on it (``CLIENTS_CHANNEL``, ``USERS_CHANNEL``).
        owns_client: Close both clients in ``close``.
        clock: Monotonic seconds (tests).
    """

    component = "invalidation"

    def __init__(
        self,
        client: Redis,
        *,
        subscriber: Redis,
        prefix: str,
        channel: str = CLIENTS_CHANNEL,
        owns_client: bool = False,
        heartbeat: float = HEARTBEAT_SECONDS,
        silence: float = SILENCE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(client, prefix=prefix, owns_client=owns_client)
        self._subscriber = subscriber
        self._channel = channel
        self._listeners: list[ChangeListener] = []
        self._heartbeat = heartbeat
        self._silence = silence
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._is_live = False
        self._reached_live = False
        self._went_live = asyncio.Event()
        self._closing = False

    @property
    def channel(self) -> str:
        return self._namespaced(self._channel)

    @property
    def is_live(self) -> bool:
        """Whether SUBSCRIBE is confirmed and nothing failed since (for tests and logs)."""
        return self._is_live

    def attach(self, listener: ChangeListener) -> None:
        """See ``ChangeFeed.attach``: not live until ``start`` has subscribed."""
        self._listeners.append(listener)
        if self._is_live:
            listener.live()

    async def publish(self, key: str) -> None:
        """See ``ChangeFeed.publish`` (PUBLISH returns once Redis has queued the
        message to every subscriber's connection)."""
        try:
            with store_errors("publish", self.component):
                await self._client.publish(self.channel, key.encode())
        except StoreUnavailable:
            # A pooled connection that died with a Redis restart fails its first command
            # ("Connection closed by server"); one more try on a fresh one saves the
            # writer the cache's fallback wait.
            with store_errors("publish", self.component):
                await self._client.publish(self.channel, key.encode())

    async def start(self, *, wait: float = START_WAIT_SECONDS) -> None:
        """Starts subscribing in the background; waits up to ``wait`` seconds for it.

        The cache stays bypassed until SUBSCRIBE is confirmed; waiting here only lets a
        fresh process start warm. A Redis that does not answer does not hold up startup.
        """
        if self._task is None:
            self._closing = False
            self._went_live = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name=f"keyturn-{self._channel}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._went_live.wait(), wait)

    async def close(self) -> None:
        """Stops the subscription, then closes the clients this feed built.

        The flag, not only the cancel, ends the loop: a cancel can get lost inside
        redis-py's read. The task was then seen listening on with the cancel still
        pending, each heartbeat read timing out to ``None`` as usual, and the app's
        shutdown hung (two CI runs). With the flag the loop ends at the next heartbeat
        at the latest.
        """
        if self._task is not None:
            self._closing = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._set_lost()
        if self._owns_client:
            await self._subscriber.aclose()
        await super().close()

    def _set_lost(self) -> None:
        was_live, self._is_live = self._is_live, False
        for listener in self._listeners:
            listener.lost()
        if was_live:
            log.warning("change_feed_lost", channel=self.channel)

    async def _run(self) -> None:
        backoff = _BACKOFF_FIRST
        while not self._closing:
            self._reached_live = False
            try:
                await self._listen()
            except (RedisError, OSError, TimeoutError) as exc:
                log.debug("change_feed_error", error=type(exc).__name__)
            except RuntimeError as exc:
                # uvloop's "handler is closed" on a transport that closed under us.
                if "handler is closed" not in str(exc):
                    raise
            finally:
                # Whatever ended the subscription (error, cancel): the listeners stop
                # trusting what they hold before anything else runs.
                self._set_lost()
            if self._closing:
                return
            # A subscription that had been live reconnects at once; a Redis that stays
            # down is retried with a growing pause.
            backoff = _BACKOFF_FIRST if self._reached_live else min(backoff * 2, _BACKOFF_CAP)
            await asyncio.sleep(backoff)

    async def _listen(self) -> None:
        pubsub: PubSub = self._subscriber.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            heard = self._clock()
            while not self._closing:
                message = await pubsub.get_message(timeout=self._heartbeat)
                now = self._clock()
                if message is None:
                    if now - heard > self._silence:
                        raise TimeoutError("the subscription went silent")
                    await pubsub.ping(_PING)
                    continue
                heard = now
                kind = message["type"]
                if kind == b"subscribe" or kind == "subscribe":
                    # SUBSCRIBE confirmed on this connection: from here on every PUBLISH
                    # reaches us. Entries filled before are dropped by ``live``.
                    self._is_live = self._reached_live = True
                    self._went_live.set()
                    for listener in self._listeners:
                        listener.live()
                    log.info("change_feed_live", channel=self.channel)
                elif kind in (b"message", "message"):
                    key = bytes(message["data"]).decode("utf-8", "replace")
                    # Synchronous: no request runs between reading and forgetting.
                    for listener in self._listeners:
                        listener.changed(key)
        finally:
            # redis-py leaves ``aclose`` unannotated; its contract is this signature.
            close: Callable[[], Awaitable[None]] = pubsub.aclose
            with contextlib.suppress(Exception):
                await close()


def build_change_feed(
    redis_url: str | None,
    *,
    prefix: str,
    channel: str = CLIENTS_CHANNEL,
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> MemoryChangeFeed | RedisChangeFeed:
    """The feed of ``channel`` for this deployment: Redis pub/sub with a URL, else
    in-process."""
    if not redis_url:
        return MemoryChangeFeed(channel)
    publisher = create_redis_client(
        redis_url, socket_timeout=socket_timeout, connect_timeout=connect_timeout
    )
    subscriber = create_redis_client(
        redis_url, socket_timeout=socket_timeout, connect_timeout=connect_timeout, retries=0
    )
    return RedisChangeFeed(
        publisher, subscriber=subscriber, prefix=prefix, channel=channel, owns_client=True
    )
