"""``python -m bench --scaling`` (``make bench-scaling``): 1, 2 and 3 workers, side by side.

One database and Redis prefix (deployment.py); for each worker count one
`keyturn serve --workers N` (uvicorn's worker processes on one port, the way one host runs
Keyturn; replicas behind nginx add a proxy hop and share the same two cores), then login,
refresh, client_credentials and ``GET /v1/me`` (many tokens), warm-up + measured runs as
``make bench`` does. Sessions, tokens and the OAuth client are minted once on the first
server and stay valid on the next (signing keys and sessions are in the database); each
server's refresh warm-up and run get sessions of their own. ``--runs`` rounds go through
the worker counts in turn (1, 2, 3, 1, 2, 3), one measured run per server; the best run of
each count is shown.

Per worker count and scenario: req/s, the factor against one worker, and the CPU each party
used during the best run (keyturn's process tree, PostgreSQL, Redis, wrk), from which the
limit is named (limit()).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.harness import analysis as names
from bench.harness import machine, scaling_report, seed, tokens
from bench.harness.console import console
from bench.harness.deployment import Deployment, deployment
from bench.harness.options import Options
from bench.harness.phases import STATUS
from bench.harness.scenarios import Measured, Runner, Scenario
from bench.harness.servers import Managed

SCENARIOS = (names.LOGIN, names.REFRESH, names.CLIENT_CREDENTIALS, names.ME_MANY)


def _plan(
    options: Options, workdir: Path, dep: Deployment, server: Managed, slots: int
) -> tuple[list[Scenario], list[list[str]]]:
    """The four scenarios and one refresh pool per (worker count, run) slot."""
    per_session = max(1, options.me_tokens // options.me_users)
    users = max(options.me_users, slots * options.connections * 2)
    sessions = dep.sessions(server.base_url, users, per_session)
    many = tokens.write_lines(workdir / "me.txt", [t for s in sessions for t in s.access])
    pools = tokens.split_pool([s.refresh for s in sessions], slots, options.connections)
    logins = tokens.write_lines(workdir / "logins.txt", dep.login_emails(users, 50_000))
    basic = dep.oauth_client(server.base_url)
    conns = options.connections
    plan = [
        Scenario(names.LOGIN, "POST /v1/auth/login", "keyturn", "login_json.lua",
                 "/v1/auth/login", options.login_connections,
                 env={"BENCH_EMAILS": str(logins), "BENCH_PASSWORD": seed.PASSWORD, **STATUS}),
        Scenario(names.REFRESH, "POST /v1/auth/refresh", "keyturn", "refresh.lua",
                 "/v1/auth/refresh", conns, env=STATUS),
        Scenario(names.CLIENT_CREDENTIALS, "POST /oauth2/token (client_credentials)", "keyturn",
                 "client_credentials.lua", "/oauth2/token", conns,
                 env={"BENCH_BASIC": basic, **STATUS}),
        Scenario(names.ME_MANY, f"GET /v1/me ({len(sessions) * per_session:,} tokens)",
                 "keyturn", "bearer.lua", "/v1/me", conns,
                 env={"BENCH_TOKENS": str(many), **STATUS}),
    ]  # fmt: skip
    return plan, pools


def _with_pools(scenario: Scenario, workdir: Path, first_slot: int) -> Scenario:
    if scenario.name != names.REFRESH:
        return scenario

    def pool(run: int) -> dict[str, str]:
        return {"BENCH_POOL": str(workdir / f"pool-{first_slot + run}.txt")}

    return Scenario(**{**vars(scenario), "run_env": pool})


def _merge(into: dict[str, Measured], more: Measured) -> None:
    """Adds one round's measured run to the scenario's runs at this worker count."""
    known = into.setdefault(more.scenario.name, Measured(more.scenario))
    known.runs += more.runs
    known.cpu += more.cpu
    known.peak_rss_mb = max(known.peak_rss_mb, more.peak_rss_mb)


def run(options: Options, wrk_path: str) -> int:
    """``--runs`` rounds, each of every worker count in turn (1, 2, 3, 1, 2, 3): on a shared
    machine the other load drifts over minutes, and interleaving gives every count the same
    chances. Writes scaling-<date>.json/.md; 3 when a request failed."""
    runner = Runner(wrk_path, options.threads, options.duration, options.warmup, 1)
    counts = options.scaling_workers
    slots = options.runs * len(counts) * 2  # each server's warm-up and run get own sessions
    measured: dict[int, dict[str, Measured]] = {workers: {} for workers in counts}
    host = machine.describe()
    with (
        tempfile.TemporaryDirectory(prefix="keyturn-scaling-") as tmp,
        deployment(options, Path(tmp), seed.production_hash(), prefix="keyturn_scaling") as dep,
    ):
        workdir = Path(tmp)
        plan: list[Scenario] = []
        for turn, workers in enumerate(counts * options.runs):
            console.print(f"[bold]round {turn // len(counts) + 1}: {workers} worker(s)[/bold]")
            server = dep.serve(workers)
            try:
                if not plan:
                    plan, pools = _plan(options, workdir, dep, server, slots)
                    for slot, pool in enumerate(pools):
                        tokens.write_lines(workdir / f"pool-{slot}.txt", pool)
                for scenario in plan:
                    one = runner.measure(_with_pools(scenario, workdir, turn * 2), server)
                    _merge(measured[workers], one)
            finally:
                server.stop()
    facts: dict[str, Any] = {"machine": host, "workers": list(counts)}
    return scaling_report.finish(
        options, facts, {workers: list(found.values()) for workers, found in measured.items()}
    )
