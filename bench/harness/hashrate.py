"""The machine's raw argon2id verify rate: the physical ceiling for password logins.

argon2-cffi releases the GIL while hashing, so N Python threads verify in parallel like
the server's hash pool does. Measured in the same run as the scenarios, with the servers
idle, on the production parameters.
"""

from __future__ import annotations

import threading
import time

from keyturn.security.passwords import OWASP_MIN, PasswordHasher


def verify_rate(password_hash: str, password: str, *, threads: int, seconds: float) -> float:
    """Successful verifies per second over ``seconds`` with ``threads`` threads."""
    hasher = PasswordHasher(OWASP_MIN)
    if not hasher.verify(password_hash, password):
        raise ValueError("the hash does not match the password")
    counts = [0] * threads
    start = threading.Barrier(threads + 1)
    deadline = 0.0

    def work(slot: int) -> None:
        start.wait()
        while time.monotonic() < deadline:
            hasher.verify(password_hash, password)
            counts[slot] += 1

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    began = time.monotonic()
    deadline = began + seconds
    start.wait()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.monotonic() - began)
