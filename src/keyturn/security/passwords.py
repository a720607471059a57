"""Password hashing: argon2id for new hashes, argon2 and bcrypt for verification.

New hashes are argon2id (RFC 9106) with the OWASP minimum by default (m=19 MiB, t=2, p=1).
Imported bcrypt hashes are verified with bcrypt's own rules and reported as needing a
rehash, so the service upgrades them to argon2id on the next successful login.

Hashing is slow on purpose, so ``HashPool`` runs it in a bounded thread pool: the event
loop never blocks, and a full pool answers at once with ``HashQueueFull`` (503 +
Retry-After) instead of queueing without bound. The hash threads run at a lower OS
priority than the event loop (``niceness``), so a login storm takes only the CPU the loop
leaves idle. The password length policy is not checked here; the service checks it
before any hashing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import threading
import unicodedata
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import argon2
import bcrypt
from argon2.exceptions import InvalidHashError, VerificationError

from keyturn.errors import HashQueueFull

__all__ = [
    "OWASP_MIN",
    "Argon2Params",
    "HashPool",
    "PasswordHasher",
    "VerifyResult",
    "normalize_password",
]

_T = TypeVar("_T")

_ARGON2_PREFIXES = ("$argon2id$", "$argon2i$")
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
# bcrypt only ever reads the first 72 bytes of a password.
_BCRYPT_MAX_BYTES = 72
# Linux scheduling niceness added to the hash threads (issue 18, item 5; measured on a
# shared 2-core machine, /work/wt/notes/crypto.md): with 2 hash threads saturated, the
# event loop's p95 for 1 ms of work fell from 29-44 ms to 9-16 ms (nice 5: 16 ms, 19: 7 ms),
# and /v1/me under a login storm from ~330 ms to 24-183 ms (p50 150-200 -> 5-14 ms).
HASH_THREAD_NICENESS = 10


@dataclass(frozen=True)
class Argon2Params:
    """Cost parameters of argon2id.

    Attributes:
        memory_kib: Memory cost in KiB (OWASP minimum 19456 = 19 MiB).
        time_cost: Number of passes (OWASP minimum 2 at 19 MiB).
        parallelism: Lanes (OWASP: 1).
    """

    memory_kib: int = 19456
    time_cost: int = 2
    parallelism: int = 1

    def meets_owasp_minimum(self) -> bool:
        """Tell whether these params reach the OWASP argon2id minimum (m=19 MiB, t=2).

        Returns:
            True when both memory and time cost are at least the OWASP minimum.
        """
        return self.memory_kib >= OWASP_MIN.memory_kib and self.time_cost >= OWASP_MIN.time_cost


OWASP_MIN = Argon2Params()


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a password check.

    Attributes:
        ok: The password matches the stored hash.
        needs_rehash: The hash matched but should be replaced (bcrypt or outdated params).
    """

    ok: bool
    needs_rehash: bool


def normalize_password(password: str) -> str:
    """Normalise a password to Unicode NFKC.

    The same password typed on different keyboards or platforms can arrive as different
    code points (a ligature, a full-width letter); NFKC makes them hash alike.

    Args:
        password: The password as received.

    Returns:
        The NFKC form of ``password``.
    """
    return unicodedata.normalize("NFKC", password)


class PasswordHasher:
    """Hash with argon2id; verify argon2id, argon2i and bcrypt hashes.

    Args:
        params: The argon2id cost parameters for new hashes.
    """

    def __init__(self, params: Argon2Params) -> None:
        self.params = params
        self._argon2 = argon2.PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            type=argon2.Type.ID,
        )
        # Computed once so a check for an unknown user costs one real argon2 verify (equal work).
        self._dummy_hash = self._argon2.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        """Hash a password with argon2id under the configured params.

        Args:
            password: The plain password (normalised here).

        Returns:
            The PHC string, e.g. ``$argon2id$v=19$m=19456,t=2,p=1$...``.
        """
        return self._argon2.hash(normalize_password(password))

    def verify(self, stored_hash: str, password: str) -> bool:
        """Check a password against a stored argon2 or bcrypt hash.

        Never raises: a mismatch, an unknown format or a corrupt hash all answer False.

        Args:
            stored_hash: The stored PHC (argon2) or modular-crypt (bcrypt) string.
            password: The plain password (normalised here).

        Returns:
            True when the password matches.
        """
        normalized = normalize_password(password)
        if stored_hash.startswith(_ARGON2_PREFIXES):
            try:
                return self._argon2.verify(stored_hash, normalized)
            except (VerificationError, InvalidHashError):
                # Mismatch and corrupt hashes alike are a plain "no", never a 500.
                return False
        if stored_hash.startswith(_BCRYPT_PREFIXES):
            return _bcrypt_verify(stored_hash, normalized)
        # An unknown scheme can never match; answering False keeps login enumeration-safe.
        return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """Tell whether a stored hash should be replaced after a successful login.

        Args:
            stored_hash: The stored hash string.

        Returns:
            True for bcrypt, argon2i, argon2id under other params, or an unparsable hash.
        """
        if not stored_hash.startswith(_ARGON2_PREFIXES):
            return True
        try:
            return self._argon2.check_needs_rehash(stored_hash)
        except InvalidHashError:
            # A hash we cannot parse is one we want replaced.
            return True

    def dummy_verify(self, password: str) -> None:
        """Do the work of one real argon2 verify and discard the result.

        Called for unknown users so that the answer time does not reveal whether an
        account exists (DESIGN.md section 4).

        Args:
            password: The submitted password.
        """
        # The dummy hash is of a random, discarded password: this always mismatches.
        with contextlib.suppress(VerificationError):
            self._argon2.verify(self._dummy_hash, normalize_password(password))


def _bcrypt_verify(stored_hash: str, normalized: str) -> bool:
    """Verify with bcrypt's own rules, refusing (not truncating) passwords over 72 bytes."""
    secret = normalized.encode("utf-8")
    if len(secret) > _BCRYPT_MAX_BYTES:
        # bcrypt would only compare the first 72 bytes; a longer password is not the one
        # that was hashed, so it must not match (and bcrypt 5 would raise: never a 500).
        return False
    try:
        return bcrypt.checkpw(secret, stored_hash.encode("ascii"))
    except ValueError:
        # Corrupt salt/cost or non-ASCII garbage in the stored hash: no match, never a 500.
        return False


def _lower_thread_priority(niceness: int) -> None:
    """Raise the calling thread's nice value by ``niceness`` (Linux: per thread)."""
    if niceness == 0 or not sys.platform.startswith("linux"):
        # On other systems PRIO_PROCESS with a thread id would renice the whole process.
        return
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):
        # Relative to the current value, so an operator's own nice is kept; capped at 19.
        # Lowering a priority never needs privileges; if a sandbox refuses, hashing still
        # works at the normal priority.
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + niceness))


class HashPool:
    """A bounded thread pool for password hashing, so the event loop never blocks.

    argon2-cffi and bcrypt release the GIL, so worker threads hash in parallel. At most
    ``workers + queue_size`` jobs are in flight; past that, calls fail fast with
    ``HashQueueFull``.

    Each worker thread lowers its own scheduling priority by ``niceness`` when it starts
    (Linux keeps a nice value per thread). The event-loop thread then wins the CPU
    whenever it has work, so requests that hash nothing (``/v1/me``, token checks) keep
    their latency while logins saturate the pool, and the pool still uses every idle
    cycle. Elsewhere, or where the OS refuses, the threads keep the normal priority.

    Args:
        hasher: The password hasher doing the work.
        workers: Number of worker threads (at least 1).
        queue_size: Jobs allowed to wait for a worker (at least 0).
        niceness: Added to each worker thread's nice value (0..19; 0 leaves it alone).

    Raises:
        ValueError: When ``workers``, ``queue_size`` or ``niceness`` is out of range.
    """

    def __init__(
        self,
        hasher: PasswordHasher,
        *,
        workers: int,
        queue_size: int,
        niceness: int = HASH_THREAD_NICENESS,
    ) -> None:
        if workers < 1 or queue_size < 0 or not 0 <= niceness <= 19:
            raise ValueError("workers must be >= 1, queue_size >= 0 and niceness in 0..19")
        self._hasher = hasher
        self._capacity = workers + queue_size
        self._executor = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="keyturn-hash",
            initializer=_lower_thread_priority,
            initargs=(niceness,),
        )
        # Done-callbacks run on worker threads, so the counter needs a lock.
        self._lock = threading.Lock()
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Jobs running or queued right now (for metrics)."""
        return self._in_flight

    @property
    def capacity(self) -> int:
        """The most jobs that may be in flight: ``workers + queue_size``."""
        return self._capacity

    async def hash(self, password: str) -> str:
        """Hash a password in the pool.

        Args:
            password: The plain password.

        Returns:
            The argon2id hash.

        Raises:
            HashQueueFull: When the pool and its queue are full.
        """
        return await self._run(partial(self._hasher.hash, password))

    async def verify(self, stored_hash: str | None, password: str) -> VerifyResult:
        """Check a password in the pool; ``None`` (unknown user) does a dummy verify.

        Args:
            stored_hash: The stored hash, or None when the user does not exist.
            password: The submitted password.

        Returns:
            Whether it matched and whether the stored hash should be upgraded.

        Raises:
            HashQueueFull: When the pool and its queue are full.
        """
        if stored_hash is None:
            # Equal work for unknown users: the caller cannot tell them apart by timing.
            await self._run(partial(self._hasher.dummy_verify, password))
            return VerifyResult(ok=False, needs_rehash=False)
        return await self._run(partial(self._verify_sync, stored_hash, password))

    def close(self) -> None:
        """Drop queued jobs, wait for running ones and stop the worker threads."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _verify_sync(self, stored_hash: str, password: str) -> VerifyResult:
        ok = self._hasher.verify(stored_hash, password)
        return VerifyResult(ok=ok, needs_rehash=ok and self._hasher.needs_rehash(stored_hash))

    async def _run(self, job: Callable[[], _T]) -> _T:
        with self._lock:
            if self._in_flight >= self._capacity:
                # Fail fast (503 + Retry-After) rather than queue without bound.
                raise HashQueueFull(retry_after=1)
            self._in_flight += 1
        # submit + wrap_future is what run_in_executor does; we need the executor future
        # itself to attach the release callback to.
        try:
            future = self._executor.submit(job)
        except BaseException:
            # Not submitted (e.g. pool closed): give the slot back.
            self._release()
            raise
        # Released when the work ends, not when the awaiting task ends: a cancelled task
        # leaves its hash running, and that hash still occupies a worker.
        future.add_done_callback(self._on_done)
        return await asyncio.wrap_future(future, loop=asyncio.get_running_loop())

    def _on_done(self, _future: Future[Any]) -> None:
        self._release()

    def _release(self) -> None:
        with self._lock:
            self._in_flight -= 1
