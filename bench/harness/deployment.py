"""One Keyturn deployment for the scaling and soak modes (``--scaling``, ``--soak``).

Its own database (created, migrated, seeded, dropped at the end) and its own Redis key
prefix (deleted at the end, never FLUSHDB); ``serve(workers)`` starts `keyturn serve` with
that many worker processes on it, as often as the mode needs (one worker count after the
other). Credentials minted on one server stay valid on the next: signing keys and
sessions live in the database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.harness import keyturn_server, oauth_probe, seed, tokens
from bench.harness.console import console
from bench.harness.options import Options
from bench.harness.servers import Database, Managed, create_database, drop_database

ADMIN_EMAIL = "operator@example.com"
# The password must not contain the address's local part (Keyturn's password policy).
ADMIN_PASSWORD = "bench-Admin-password-42x"


@dataclass
class Deployment:
    """A migrated, seeded database and a Redis prefix; servers come and go on it."""

    options: Options
    setup: keyturn_server.KeyturnSetup
    database: Database
    workdir: Path

    def serve(self, workers: int, env: Mapping[str, str] | None = None) -> Managed:
        """Starts `keyturn serve` with ``workers`` processes; the caller stops it."""
        setup = dataclasses.replace(
            self.setup,
            env={**self.setup.env, "KEYTURN_WORKERS": str(workers), **(env or {})},
        )
        return keyturn_server.start(setup, self.workdir, self.options.server)

    def sessions(
        self, base_url: str, count: int, per_session: int, first: int = 0
    ) -> list[tokens.SessionTokens]:
        """Logs seeded users ``first .. first + count`` in, ``per_session`` access tokens each."""
        emails = [seed.user_email(index) for index in range(first, first + count)]
        return tokens.keyturn_sessions(base_url, emails, seed.PASSWORD, per_session)

    def login_emails(self, skip: int, count: int) -> list[str]:
        """Distinct seeded addresses for login runs, none of the first ``skip`` (sessions)."""
        picked = random.sample(
            range(skip, self.options.users), min(count, self.options.users - skip)
        )
        return [seed.user_email(index) for index in picked]

    def oauth_client(self, base_url: str) -> str:
        """An admin and a confidential client_credentials client; its HTTP Basic value."""
        keyturn_server.create_admin(self.setup, ADMIN_EMAIL, ADMIN_PASSWORD)
        client = oauth_probe.create_client(
            base_url, oauth_probe.admin_token(base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
        )
        return tokens.basic_auth(client.client_id, client.client_secret)


@contextlib.contextmanager
def deployment(
    options: Options,
    workdir: Path,
    password_hash: str,
    *,
    prefix: str,
    env: Mapping[str, str] | None = None,
) -> Iterator[Deployment]:
    """Creates, migrates and seeds a database; drops it and the Redis keys at the end."""
    with contextlib.ExitStack() as stack:
        database = create_database(options.postgres, prefix)
        stack.callback(drop_database, database)
        setup = keyturn_server.keyturn_setup(options, database, workdir)
        # One issuer for every server of the run: in dev mode it defaults to the listener's
        # port, and tokens minted on one server would not verify on the next.
        issuer = {"KEYTURN_ISSUER": "http://127.0.0.1"}
        setup = dataclasses.replace(setup, env={**setup.env, **issuer, **(env or {})})
        stack.callback(keyturn_server.delete_redis_keys, options.redis, setup.redis_prefix)
        keyturn_server.migrate(setup)
        seconds = seed.seed(
            database.dsn, "users", seed.KEYTURN_COLUMNS, options.users,
            seed.keyturn_rows(password_hash),
        )  # fmt: skip
        console.print(f"seeded {options.users:,} users in {seconds} s ({database.name})")
        yield Deployment(options=options, setup=setup, database=database, workdir=workdir)
