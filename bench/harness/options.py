"""Command-line options of the harness and the sizes derived from them."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
LUA_DIR = BENCH_DIR / "lua"
PEERS_DIR = BENCH_DIR / "peers"
RESULTS_DIR = BENCH_DIR / "results"

SCENARIO_GROUPS = ("keyturn", "oauth", "fastapi-users", "oidc-provider")


@dataclass(frozen=True)
class Options:
    """Everything one run needs to know; ``--quick`` only changes the defaults."""

    quick: bool
    users: int
    workers: int
    server: str
    hash_threads: int
    duration: float
    warmup: float
    runs: int
    threads: int
    connections: int
    login_connections: int
    me_users: int
    me_tokens: int
    peer_users: int
    peer_tokens: int
    peers: bool
    only: tuple[str, ...]
    install_wrk: str
    postgres: str
    redis: str
    results_dir: Path
    hash_seconds: float
    scaling: bool = False
    scaling_workers: tuple[int, ...] = (1, 2, 3)
    soak: bool = False
    minutes: float = 30.0
    profile: bool = False
    rounds: int = 0

    def wants(self, group: str) -> bool:
        return not self.only or group in self.only


def parse(argv: list[str] | None = None) -> Options:
    cpus = os.cpu_count() or 1
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Keyturn benchmark: wrk scenarios against `keyturn serve`, with peers.",
    )
    parser.add_argument("--quick", action="store_true", help="short smoke run (a few minutes)")
    parser.add_argument("--users", type=int, help="seeded users (100000)")
    parser.add_argument("--workers", type=int, help="keyturn serve workers (1; the soak: 2)")
    parser.add_argument(
        "--server",
        choices=("uvicorn", "granian"),
        default="uvicorn",
        help="ASGI server under Keyturn: uvicorn (what `keyturn serve` runs) or granian",
    )
    parser.add_argument(
        "--hash-threads", type=int, default=cpus, help=f"KEYTURN_HASH_WORKERS ({cpus})"
    )
    parser.add_argument("--duration", type=float, help="seconds per measured run (10; quick 3)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds (3; quick 1)")
    parser.add_argument("--runs", type=int, default=2, help="measured runs per scenario (2)")
    parser.add_argument(
        "--rounds",
        type=int,
        help="paired rounds of issue 18's ratio rows after the phases (3; quick 1; 0: none)",
    )
    parser.add_argument("--threads", type=int, default=min(cpus, 4), help="wrk threads")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument(
        "--login-connections", type=int, default=16, help="wrk connections for logins (16)"
    )
    parser.add_argument("--me-tokens", type=int, help="distinct /v1/me tokens (10000; quick 1000)")
    parser.add_argument("--me-users", type=int, help="users holding them (1000; quick 200)")
    parser.add_argument(
        "--peer-users", type=int, help="users seeded for the fastapi-users peer (10000; quick 5000)"
    )
    parser.add_argument("--no-peers", action="store_true", help="skip the peer servers")
    parser.add_argument(
        "--only",
        action="append",
        choices=SCENARIO_GROUPS,
        help="run only these scenario groups (repeatable)",
    )
    parser.add_argument(
        "--install-wrk",
        choices=("auto", "ask", "never"),
        default="auto",
        help="when wrk is missing: apt-get install it (auto, as root), ask, or stop",
    )
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432",
        help="PostgreSQL server (the harness creates and drops its own databases)",
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument(
        "--scaling",
        action="store_true",
        help="login, refresh, client_credentials and /v1/me with 1, 2, 3 workers (scaling.py)",
    )
    modes.add_argument(
        "--soak", action="store_true", help="a long mixed run at half capacity (soak.py)"
    )
    parser.add_argument(
        "--scaling-workers",
        default="1,2,3",
        help="worker counts of --scaling, comma-separated (1,2,3)",
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="soak length (30)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy samples Keyturn's first measured run of each scenario (profiling.py)",
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    return Options(
        quick=quick,
        users=args.users or 100_000,
        workers=args.workers or (2 if args.soak else 1),
        server=args.server,
        hash_threads=args.hash_threads,
        duration=args.duration or (3.0 if quick else 10.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if quick else 3.0),
        runs=args.runs,
        threads=args.threads,
        connections=args.connections,
        login_connections=args.login_connections,
        me_users=args.me_users or (200 if quick else 1000),
        me_tokens=args.me_tokens or (1000 if quick else 10_000),
        peer_users=args.peer_users or (5000 if quick else 10_000),
        peer_tokens=50 if quick else 200,
        peers=not args.no_peers,
        only=tuple(args.only or ()),
        install_wrk=args.install_wrk,
        postgres=args.postgres.rstrip("/"),
        redis=args.redis,
        results_dir=args.results_dir,
        hash_seconds=2.0 if quick else 5.0,
        scaling=bool(args.scaling),
        scaling_workers=tuple(int(n) for n in args.scaling_workers.split(",")),
        soak=bool(args.soak),
        minutes=args.minutes,
        profile=bool(args.profile),
        rounds=args.rounds if args.rounds is not None else (1 if quick else 3),
    )
