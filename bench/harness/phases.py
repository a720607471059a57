"""The Keyturn phase of a run (the peers' phases are in peer_phases.py).

Each phase puts its servers and databases on the run's ExitStack, so they are stopped and
dropped when the run ends, also when it fails. A phase's server stays up, idle, through
the later phases: the paired rounds (pairs.py) measure it again beside the peers. CPU is
counted per server process tree (procstat.py), so an idle server adds nothing to another's
figures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import analysis as names
from bench.harness import keyturn_server, oauth_probe, seed, tokens, wrk
from bench.harness.console import console
from bench.harness.hashrate import verify_rate
from bench.harness.options import Options
from bench.harness.scenarios import Measured, Runner, Scenario
from bench.harness.servers import Managed, create_database, drop_database

LOGIN_SAMPLE = 50_000
PACED_SHARE = 0.7
CALIBRATION_SECONDS = 2.0
# The mixed scenario's /v1/me side: a modest paced load (8 connections, 20 ms apart).
MIXED_ME_CONNECTIONS = 8
MIXED_ME_DELAY_MS = 20.0
# Count answers >= 300 by status on the low-rate, stateful scenarios (report.lua).
STATUS = {"BENCH_STATUS": "1"}


@dataclass
class Outcome:
    """What the phases found, for the report."""

    results: dict[str, Measured] = field(default_factory=dict)
    pending: list[Scenario] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # The server of each target, still running for the paired rounds.
    servers: dict[str, Managed] = field(default_factory=dict)
    # Work to redo before a scenario is measured again (fresh tokens a peer may have evicted).
    prepare: dict[str, Callable[[], None]] = field(default_factory=dict)

    def add(self, measured: Measured) -> None:
        self.results[measured.scenario.name] = measured


def emails_of(indexes: range | list[int]) -> list[str]:
    return [seed.user_email(index) for index in indexes]


def hash_ceiling(options: Options, password_hash: str) -> float:
    """The raw argon2id verify rate now, in the hash pool's thread count (hashrate.py)."""
    return verify_rate(
        password_hash, seed.PASSWORD, threads=options.hash_threads, seconds=options.hash_seconds
    )


def keyturn_phase(
    options: Options,
    runner: Runner,
    workdir: Path,
    outcome: Outcome,
    password_hash: str,
    stack: contextlib.ExitStack,
) -> None:
    database = create_database(options.postgres, "keyturn_bench")
    stack.callback(drop_database, database)
    setup = keyturn_server.keyturn_setup(options, database, workdir)
    stack.callback(keyturn_server.delete_redis_keys, options.redis, setup.redis_prefix)
    keyturn_server.migrate(setup)
    outcome.facts["keyturn_seed_seconds"] = seed.seed(
        database.dsn,
        "users",
        seed.KEYTURN_COLUMNS,
        options.users,
        seed.keyturn_rows(password_hash),
    )
    console.print(f"seeded {options.users:,} users in {outcome.facts['keyturn_seed_seconds']} s")
    ceiling = hash_ceiling(options, password_hash)
    outcome.facts["raw_argon2id_verify_per_s"] = round(ceiling, 1)
    console.print(f"raw argon2id verify: {ceiling:.1f}/s in {options.hash_threads} threads")
    server = keyturn_server.start(setup, workdir, options.server)
    stack.callback(server.stop)
    outcome.servers["keyturn"] = server
    _keyturn_scenarios(options, runner, workdir, outcome, server, setup)


def _keyturn_scenarios(
    options: Options,
    runner: Runner,
    workdir: Path,
    outcome: Outcome,
    server: Managed,
    setup: keyturn_server.KeyturnSetup,
) -> None:
    per_session = max(1, options.me_tokens // options.me_users)
    sessions = tokens.keyturn_sessions(
        server.base_url, emails_of(range(options.me_users)), seed.PASSWORD, per_session
    )
    all_tokens = [token for session in sessions for token in session.access]
    many = tokens.write_lines(workdir / "me-tokens.txt", all_tokens)
    one = tokens.write_lines(workdir / "me-one-token.txt", all_tokens[:1])
    picked = random.sample(
        range(options.me_users, options.users), min(LOGIN_SAMPLE, options.users - options.me_users)
    )
    logins = tokens.write_lines(workdir / "login-emails.txt", emails_of(picked))
    # Warm-up and each measured run get their own sessions (bench/lua/refresh.lua).
    pools = tokens.split_pool(
        [session.refresh for session in sessions], options.runs + 1, options.connections
    )
    for run, pool in enumerate(pools):
        tokens.write_lines(workdir / f"refresh-pool-{run}.txt", pool)
    login_env = {"BENCH_EMAILS": str(logins), "BENCH_PASSWORD": seed.PASSWORD, **STATUS}
    conns = options.connections
    me_many_title = f"GET /v1/me ({len(all_tokens):,} tokens, {len(sessions):,} users)"
    plan = [
        Scenario(
            names.HEALTHZ, "GET /healthz (baseline)", "keyturn", "plain.lua", "/healthz", conns
        ),
        Scenario(
            names.ME_ONE,
            "GET /v1/me (one token)",
            "keyturn",
            "bearer.lua",
            "/v1/me",
            conns,
            env={"BENCH_TOKENS": str(one)},
        ),
        Scenario(
            names.ME_MANY,
            me_many_title,
            "keyturn",
            "bearer.lua",
            "/v1/me",
            conns,
            env={"BENCH_TOKENS": str(many)},
        ),
        Scenario(
            names.JWKS,
            "GET /.well-known/jwks.json",
            "keyturn",
            "plain.lua",
            "/.well-known/jwks.json",
            conns,
        ),
        Scenario(
            names.LOGIN,
            "POST /v1/auth/login",
            "keyturn",
            "login_json.lua",
            "/v1/auth/login",
            options.login_connections,
            env=login_env,
            note="distinct seeded users, correct passwords, production argon2id",
        ),
        Scenario(
            names.REFRESH,
            "POST /v1/auth/refresh (fresh token each)",
            "keyturn",
            "refresh.lua",
            "/v1/auth/refresh",
            conns,
            env=STATUS,
            run_env=lambda run: {"BENCH_POOL": str(workdir / f"refresh-pool-{run}.txt")},
            note="every request rotates a never-used refresh token",
        ),
    ]
    for scenario in plan:
        outcome.add(runner.measure(scenario, server))
    _paced(options, runner, outcome, server, many)
    _mixed(options, runner, outcome, server, many, login_env)
    if options.wants("oauth") or options.wants("keyturn"):
        _oauth(options, runner, workdir, outcome, server, setup)


def _paced(options: Options, runner: Runner, outcome: Outcome, server: Managed, many: Path) -> None:
    """wrk has no fixed-rate mode (wrk2 is not packaged): each connection waits a fixed
    delay between requests. The delay is sized for ~70% of the measured maximum, then
    corrected once from a calibration run (a connection's cycle is latency + delay)."""
    top = outcome.results[names.ME_MANY].best.rps
    target = PACED_SHARE * top
    cycle_ms = options.connections * 1000 / target
    delay_ms = cycle_ms
    probe = Scenario(
        names.ME_PACED, "GET /v1/me paced at ~70% of max", "keyturn", "bearer.lua", "/v1/me",
        options.connections, env={"BENCH_TOKENS": str(many)}, delay_ms=delay_ms,
    )  # fmt: skip
    calibration = wrk.run(runner.wrk_path, runner.job(probe, server, 0, CALIBRATION_SECONDS))
    if calibration.rps > 0:
        latency_ms = options.connections * 1000 / calibration.rps - delay_ms
        delay_ms = max(0.0, cycle_ms - max(0.0, latency_ms))
    scenario = dataclasses.replace(
        probe,
        delay_ms=delay_ms,
        note=f"{options.connections} connections, {delay_ms:.2f} ms between requests each "
        f"(aimed at {target:,.0f} req/s = 70% of max; wrk delay(), one calibration run; "
        "no coordinated-omission correction as in wrk2)",
    )
    outcome.add(runner.measure(scenario, server, warm=False))


def _mixed(
    options: Options,
    runner: Runner,
    outcome: Outcome,
    server: Managed,
    many: Path,
    login_env: dict[str, str],
) -> None:
    me = Scenario(
        names.MIXED,
        "GET /v1/me while logins saturate the hash pool",
        "keyturn",
        "bearer.lua",
        "/v1/me",
        MIXED_ME_CONNECTIONS,
        env={"BENCH_TOKENS": str(many)},
        delay_ms=MIXED_ME_DELAY_MS,
        note=f"/v1/me paced: {MIXED_ME_CONNECTIONS} connections, {MIXED_ME_DELAY_MS:g} ms apart;"
        f" logins: {options.login_connections} connections flat out",
    )
    login = Scenario(
        "login-companion",
        "POST /v1/auth/login",
        "keyturn",
        "login_json.lua",
        "/v1/auth/login",
        options.login_connections,
        env=login_env,
    )
    outcome.add(runner.measure_together(me, login, server))


def _oauth(
    options: Options,
    runner: Runner,
    workdir: Path,
    outcome: Outcome,
    server: Managed,
    setup: keyturn_server.KeyturnSetup,
) -> None:
    found = oauth_probe.probe(server.base_url)
    cc = Scenario(
        names.CLIENT_CREDENTIALS,
        "POST /oauth2/token (client_credentials)",
        "keyturn",
        "client_credentials.lua",
        oauth_probe.TOKEN_PATH,
        options.connections,
    )
    intro = Scenario(
        names.INTROSPECT,
        "POST /oauth2/introspect",
        "keyturn",
        "introspect.lua",
        oauth_probe.INTROSPECT_PATH,
        options.connections,
    )
    if isinstance(found, str):
        console.print(f"OAuth endpoints not available yet ({found})")
        outcome.pending += [
            Scenario(**{**vars(cc), "pending": found}),
            Scenario(**{**vars(intro), "pending": found}),
        ]
        return
    # The password must not contain the address's local part (Keyturn's password policy).
    email, password = "operator@example.com", "bench-Admin-password-42x"
    keyturn_server.create_admin(setup, email, password)
    client = oauth_probe.create_client(
        server.base_url, oauth_probe.admin_token(server.base_url, email, password)
    )
    basic = tokens.basic_auth(client.client_id, client.client_secret)
    cc = Scenario(**{**vars(cc), "path": found.token_path, "env": {"BENCH_BASIC": basic, **STATUS}})
    outcome.add(runner.measure(cc, server))
    issued = tokens.client_credentials_tokens(server.base_url + found.token_path, basic, {}, 500)
    listed = tokens.write_lines(workdir / "keyturn-cc-tokens.txt", issued)
    intro = Scenario(
        **{
            **vars(intro),
            "path": found.introspect_path,
            "env": {"BENCH_BASIC": basic, "BENCH_TOKENS": str(listed), **STATUS},
        }
    )
    outcome.add(runner.measure(intro, server))
