"""What the soak samples every 30 s, from outside the server (/proc, PostgreSQL, Redis).

- resident size and open file descriptors of each `keyturn serve` process (the
  supervisor and its workers, by pid);
- PostgreSQL connections to the soak's database (``pg_stat_activity``, the probe's own
  connection excluded);
- Redis ``used_memory`` of the soak's private redis-server, its keys, and the keys without
  a TTL;
- outbox depth: rows still to send (``pending`` and ``sending``);
- the audit log's unsealed rows, when the schema has a column that says so;
- mails the local SMTP server accepted so far.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from redis import Redis

from bench.harness.procstat import process_tree, rss_bytes

_PROC = Path("/proc")

CONNECTIONS_SQL = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"
)
OUTBOX_SQL = "SELECT count(*) FROM outbox_messages WHERE status IN ('pending', 'sending')"
AUDIT_COLUMNS_SQL = (
    "SELECT column_name, is_nullable FROM information_schema.columns"
    " WHERE table_name = 'audit_events'"
)


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(_PROC / str(pid) / "fd"))
    except OSError:
        return 0


def command_line(pid: int) -> str:
    """What a pid runs (supervisor, worker, multiprocessing helper), for the report."""
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:160]


def unsealed_sql(columns: dict[str, bool]) -> str | None:
    """How to count unsealed audit rows in this schema (column name -> nullable), or None.

    The sealer (issue 17) leaves rows unchained until it seals them: a ``sealed_at`` column,
    or a nullable ``hash``. Before it, every row is chained at insert: nothing to count.
    """
    for column in ("sealed_at", "hash"):
        if columns.get(column):
            # The name comes from the tuple above, never from input.
            return f"SELECT count(*) FROM audit_events WHERE {column} IS NULL"  # noqa: S608
    return None


def _key_counts(redis: Redis) -> tuple[int, int]:
    """Keys in the soak's private Redis, and how many carry no TTL.

    Every Keyturn key but the deny-list marker expires (deployment guide, section 7), so
    the memory of a steady load levels off once the longest window (1 hour: signups per
    IP, mails per address) has filled; a key without a TTL is what could grow for ever.
    """
    keys = no_ttl = 0
    batch: list[bytes] = []

    def flush() -> int:
        pipe = redis.pipeline(transaction=False)
        for key in batch:
            pipe.ttl(key)
        return sum(1 for ttl in pipe.execute() if ttl == -1)

    for key in redis.scan_iter(count=1000):
        keys += 1
        batch.append(key)
        if len(batch) >= 1000:
            no_ttl += flush()
            batch = []
    if batch:
        no_ttl += flush()
    return keys, no_ttl


@dataclass
class Probe:
    """Samples one soak deployment; ``sample()`` returns one flat row of numbers."""

    server_pid: int
    database_dsn: str
    database_name: str
    redis_url: str
    mails: Any  # an SmtpSink (its ``received``)
    audit_rule: str | None = None
    pids: list[int] = field(default_factory=list)

    def start(self) -> None:
        self.pids = process_tree(self.server_pid)
        self.audit_rule = asyncio.run(self._audit_rule())

    async def _audit_rule(self) -> str | None:
        conn = await asyncpg.connect(self.database_dsn, timeout=10)
        try:
            rows = await conn.fetch(AUDIT_COLUMNS_SQL)
        finally:
            await conn.close()
        return unsealed_sql({row[0]: row[1] == "YES" for row in rows})

    async def _database(self) -> dict[str, int | None]:
        conn = await asyncpg.connect(self.database_dsn, timeout=10)
        try:
            connections = await conn.fetchval(CONNECTIONS_SQL, self.database_name)
            outbox = await conn.fetchval(OUTBOX_SQL)
            unsealed = await conn.fetchval(self.audit_rule) if self.audit_rule else None
        finally:
            await conn.close()
        return {"pg_connections": connections, "outbox_depth": outbox, "audit_unsealed": unsealed}

    def sample(self, elapsed: float) -> dict[str, Any]:
        # Workers are found again each time: a worker that died and was replaced shows up
        # as a new pid (and its predecessor's series ends).
        self.pids = process_tree(self.server_pid)
        row: dict[str, Any] = {"t_s": round(elapsed, 1)}
        for pid in self.pids:
            row[f"rss_mb.{pid}"] = round(rss_bytes(pid) / 2**20, 1)
            row[f"fds.{pid}"] = open_fds(pid)
        row.update(asyncio.run(self._database()))
        with Redis.from_url(self.redis_url) as redis:
            info = redis.info("memory")
            row["redis_keys"], row["redis_keys_without_ttl"] = _key_counts(redis)
        row["redis_used_memory_mb"] = round(int(info["used_memory"]) / 2**20, 2)
        row["mails_received"] = self.mails.received
        return row
