"""The peers' phases: the fastapi-users app, then node-oidc-provider.

Like the Keyturn phase (phases.py), each puts its servers and databases on the run's
ExitStack, and its last server stays up, idle, for the paired rounds (pairs.py).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from bench.harness import analysis as names
from bench.harness import peers, seed, tokens
from bench.harness.console import console
from bench.harness.options import Options
from bench.harness.phases import STATUS, Outcome, emails_of, hash_ceiling
from bench.harness.scenarios import Runner, Scenario
from bench.harness.servers import create_database, drop_database

# fastapi-users' default hasher (argon2id m=64 MiB, t=3, p=4) verifies on the event loop:
# requests queue behind each other, and whatever a run leaves queued delays the next one.
DEFAULT_HASH_CONNECTIONS = 2
DEFAULT_HASH_MIN_SECONDS = 10.0
DEFAULT_HASH_SETTLE_SECONDS = 8.0
OIDC_INTROSPECTION_TOKENS = 500  # the provider's in-memory adapter keeps 1,000 entries


def fastapi_users_phase(
    options: Options, runner: Runner, workdir: Path, outcome: Outcome, stack: contextlib.ExitStack
) -> None:
    python = peers.ensure_fastapi_users()
    # The machine may be shared: the hash ceiling again, so both logins can be read
    # against the ceiling of their own moment.
    outcome.facts["raw_argon2id_verify_per_s_fastapi_users_phase"] = round(
        hash_ceiling(options, seed.production_hash()),
        1,
    )
    console.print(
        "raw argon2id verify before the fastapi-users phase: "
        f"{outcome.facts['raw_argon2id_verify_per_s_fastapi_users_phase']}/s"
    )
    equal_hash = peers.fastapi_users_hash(python, "keyturn", seed.PASSWORD)
    default_hash = peers.fastapi_users_hash(python, "default", seed.PASSWORD)
    outcome.facts["fastapi_users_default_hash_params"] = default_hash.split("$")[3]
    emails = tokens.write_lines(
        workdir / "fu-emails.txt", emails_of(range(options.peer_tokens, options.peer_users))
    )
    login_env = {"BENCH_EMAILS": str(emails), "BENCH_PASSWORD": seed.PASSWORD, **STATUS}
    database = create_database(options.postgres, "fastapi_users_bench")
    stack.callback(drop_database, database)
    server = peers.start_fastapi_users(python, database, "keyturn", workdir)
    with contextlib.ExitStack() as stop:
        stop.callback(server.stop)
        outcome.facts["fastapi_users_seed_seconds"] = seed.seed(
            database.dsn,
            "user",
            seed.FASTAPI_USERS_COLUMNS,
            options.peer_users,
            seed.fastapi_users_rows(equal_hash),
        )
        issued = tokens.fastapi_users_tokens(
            server.base_url, emails_of(range(options.peer_tokens)), seed.PASSWORD
        )
        listed = tokens.write_lines(workdir / "fu-tokens.txt", issued)
        outcome.add(
            runner.measure(
                Scenario(
                    names.FU_ME,
                    f"GET /users/me ({len(issued)} tokens)",
                    "fastapi-users",
                    "bearer.lua",
                    "/users/me",
                    options.connections,
                    env={"BENCH_TOKENS": str(listed)},
                ),
                server,
            )
        )
        outcome.add(
            runner.measure(
                Scenario(
                    names.FU_LOGIN_EQUAL,
                    "POST /auth/jwt/login (argon2id m=19456,t=2,p=1)",
                    "fastapi-users",
                    "login_form.lua",
                    "/auth/jwt/login",
                    options.login_connections,
                    env=login_env,
                    note="same hash cost as Keyturn",
                ),
                server,
            )
        )
    seed.set_fastapi_users_hash(database.dsn, default_hash)
    server = peers.start_fastapi_users(python, database, "default", workdir)
    stack.callback(server.stop)
    # The paired rounds measure /users/me here again: the route never hashes, so the
    # server's hasher does not matter to it.
    outcome.servers["fastapi-users"] = server
    params = outcome.facts["fastapi_users_default_hash_params"]
    outcome.add(
        runner.measure(
            Scenario(
                names.FU_LOGIN_DEFAULT,
                f"POST /auth/jwt/login (default hash: argon2id {params})",
                "fastapi-users",
                "login_form.lua",
                "/auth/jwt/login",
                DEFAULT_HASH_CONNECTIONS,
                env=login_env,
                note="fastapi-users' default PasswordHelper; it hashes on the event loop,"
                f" so {DEFAULT_HASH_CONNECTIONS} connections, runs of at least"
                f" {DEFAULT_HASH_MIN_SECONDS:g} s and a pause for its queue to drain",
                min_duration=DEFAULT_HASH_MIN_SECONDS,
                settle_s=DEFAULT_HASH_SETTLE_SECONDS,
            ),
            server,
            warm=False,
        )
    )


def oidc_phase(
    options: Options, runner: Runner, workdir: Path, outcome: Outcome, stack: contextlib.ExitStack
) -> None:
    cc = Scenario(
        names.OIDC_CLIENT_CREDENTIALS,
        "POST /token (client_credentials, ES256 JWT)",
        "oidc-provider",
        "client_credentials.lua",
        "/token",
        options.connections,
    )
    intro = Scenario(
        names.OIDC_INTROSPECT,
        "POST /token/introspection (opaque tokens)",
        "oidc-provider",
        "introspect.lua",
        "/token/introspection",
        options.connections,
    )
    node = peers.ensure_oidc_provider()
    if node is None:
        reason = "node/npm not installed"
        outcome.pending += [Scenario(**{**vars(s), "pending": reason}) for s in (cc, intro)]
        return
    basic = tokens.basic_auth(peers.OIDC_CLIENT_ID, peers.OIDC_CLIENT_SECRET)
    server = peers.start_oidc_provider(node, workdir)
    stack.callback(server.stop)
    outcome.servers["oidc-provider"] = server
    form = f"&scope=api:read&resource={peers.OIDC_JWT_RESOURCE}"
    outcome.add(
        runner.measure(
            Scenario(**{**vars(cc), "env": {"BENCH_BASIC": basic, "BENCH_FORM": form, **STATUS}}),
            server,
        )
    )
    listed = workdir / "oidc-tokens.txt"

    def issue_tokens() -> None:
        # Opaque tokens live in the provider's in-memory store (1,000 entries, oldest out):
        # issued right before each introspection measurement, so every one is still there.
        issued = tokens.client_credentials_tokens(
            server.base_url + "/token",
            basic,
            {"scope": "api:read", "resource": peers.OIDC_OPAQUE_RESOURCE},
            OIDC_INTROSPECTION_TOKENS,
        )
        tokens.write_lines(listed, issued)

    issue_tokens()
    outcome.prepare[names.OIDC_INTROSPECT] = issue_tokens
    outcome.add(
        runner.measure(
            Scenario(
                **{
                    **vars(intro),
                    "env": {"BENCH_BASIC": basic, "BENCH_TOKENS": str(listed), **STATUS},
                }
            ),
            server,
        )
    )
