"""``python -m bench --soak [--minutes 30]`` (``make soak``): a long run at half capacity.

One `keyturn serve` (``--workers``, 2 by default here) on its own database, a private
redis-server and a local SMTP server (aiosmtpd). Five flows run at once, each a paced wrk
(``delay()``): login, refresh, ``GET /v1/me``, client_credentials and signup (whose
verification mails go through the outbox to the SMTP server). Each flow is first measured
flat out for a few seconds (its capacity C); during the soak it is paced at
``0.5 x C / 5``, so the five together ask for about half of what the server can do.

Every 30 s the probe (soak_probe.py) samples memory, descriptors, connections, Redis
memory, outbox depth and unsealed audit rows; at the end each series is judged flat or
not (soak_analysis.py) and ``bench/results/soak-<time>.json`` + ``.md`` are written.
Traffic goes to 127.0.0.1 only, and every wrk stops by itself after ``--minutes``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import machine, seed, soak_report, tokens, wrk
from bench.harness.console import console
from bench.harness.deployment import Deployment, deployment
from bench.harness.options import Options
from bench.harness.scenarios import Runner, Scenario
from bench.harness.servers import Managed, start_redis
from bench.harness.smtp_sink import SmtpSink
from bench.harness.soak_probe import Probe, command_line

SHARE = 0.5
CALIBRATION_SECONDS = 3.0
SAMPLE_SECONDS = 30.0
DRAIN_SECONDS = 20.0
SESSIONS = 160
CALIBRATION_CONNECTIONS = 32
SIGNUP_PASSWORD = "soak-Signup-password-9z"
UNLIMITED = str(100_000_000)


@dataclass(frozen=True)
class Flow:
    """One workload of the mix: flat-out connections to calibrate, a few paced ones to soak."""

    scenario: Scenario
    soak_connections: int
    soak_env: dict[str, str]


def _flows(dep: Deployment, server: Managed, workdir: Path, nonce: str) -> list[Flow]:
    sessions = dep.sessions(server.base_url, SESSIONS, 5)
    access = tokens.write_lines(workdir / "soak-me.txt", [t for s in sessions for t in s.access])
    # Warm-up, calibration run and soak each get sessions of their own: a refresh token
    # presented twice ends its session (reuse detection) and counts as a failure.
    pools = tokens.split_pool([s.refresh for s in sessions], 3, CALIBRATION_CONNECTIONS)
    for run, heads in enumerate(pools):
        tokens.write_lines(workdir / f"soak-pool-{run}.txt", heads)
    emails = tokens.write_lines(workdir / "soak-logins.txt", dep.login_emails(SESSIONS, 20_000))
    basic = dep.oauth_client(server.base_url)
    status = {"BENCH_STATUS": "1"}
    login = {"BENCH_EMAILS": str(emails), "BENCH_PASSWORD": seed.PASSWORD, **status}
    signup = {"BENCH_PASSWORD": SIGNUP_PASSWORD, **status}

    def flow(
        name: str,
        script: str,
        path: str,
        conns: tuple[int, int],
        env: dict[str, str],
        per_run: str | None = None,
        value: str = "",
    ) -> Flow:
        # ``per_run``: a variable whose value differs per run (``{run}`` in ``value``):
        # warm-up 0, calibration 1, soak "s", so no run reuses another's tokens or addresses.
        def run_env(run: int) -> dict[str, str]:
            return {per_run: value.format(run=run)} if per_run else {}

        scenario = Scenario(
            name, f"{name} {path}", "keyturn", script, path, conns[0], env=env, run_env=run_env
        )
        return Flow(scenario, conns[1], run_env(2) if per_run else {})

    pool = str(workdir / "soak-pool-{run}.txt")
    return [
        flow("login", "login_json.lua", "/v1/auth/login", (16, 2), login),
        flow("refresh", "refresh.lua", "/v1/auth/refresh", (32, 4), status, "BENCH_POOL", pool),
        flow("me", "bearer.lua", "/v1/me", (32, 4), {"BENCH_TOKENS": str(access), **status}),
        flow("client_credentials", "client_credentials.lua", "/oauth2/token", (32, 4),
             {"BENCH_BASIC": basic, **status}),
        flow("signup", "signup.lua", "/v1/auth/signup", (16, 2), signup, "BENCH_NONCE",
             f"soak{{run}}-{nonce}"),
    ]  # fmt: skip


def _calibrate(runner: Runner, server: Managed, flows: list[Flow]) -> dict[str, wrk.WrkResult]:
    return {flow.scenario.name: runner.measure(flow.scenario, server).best for flow in flows}


def _delay_ms(conns: int, rate: float, saturated: wrk.WrkResult) -> float:
    """Each connection's pause: its share of the cycle, less the expected answer time.

    A connection's cycle is latency + delay. Half-loaded answers are quicker than the
    saturated calibration's, so half its median stands in for the latency (never more
    than half the cycle).
    """
    cycle = conns * 1000 / rate
    return cycle - min(saturated.percentile("50") / 2, cycle / 2)


def _soak_job(flow: Flow, server: Managed, delay_ms: float, seconds: float) -> wrk.WrkJob:
    conns = flow.soak_connections
    env = {**flow.scenario.env, **flow.soak_env, "BENCH_DELAY_MS": f"{delay_ms:.3f}"}
    return wrk.WrkJob(server.base_url + flow.scenario.path, flow.scenario.script, 1, conns,
                      seconds, env)  # fmt: skip


def _run_soak(
    wrk_path: str, server: Managed, flows: list[Flow], delays: dict[str, float], probe: Probe,
    seconds: float,
) -> tuple[list[dict[str, Any]], dict[str, wrk.WrkResult]]:  # fmt: skip
    jobs = {f.scenario.name: _soak_job(f, server, delays[f.scenario.name], seconds) for f in flows}
    running = {name: wrk.start(wrk_path, job) for name, job in jobs.items()}
    started = time.monotonic()
    samples: list[dict[str, Any]] = []
    try:
        while True:
            elapsed = time.monotonic() - started
            samples.append(probe.sample(elapsed))
            console.print(soak_report.progress_line(samples[-1]))
            if all(p.poll() is not None for p in running.values()) or elapsed >= seconds:
                break
            time.sleep(max(0.0, min(SAMPLE_SECONDS * len(samples), seconds) + started
                           - time.monotonic()))  # fmt: skip
        return samples, {name: wrk.collect(running[name], jobs[name]) for name in jobs}
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def run(options: Options, wrk_path: str) -> int:
    """The whole soak; 0 when every series is flat and no request failed, else 3."""
    password_hash = seed.production_hash()
    nonce = secrets.token_hex(3)
    seconds = options.minutes * 60
    # Taken now: the branch may move while a 30-minute soak runs.
    ran_on = soak_report.commit()
    host = machine.describe()
    with (
        tempfile.TemporaryDirectory(prefix="keyturn-soak-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        redis = start_redis(workdir)
        stack.callback(redis.stop)
        sink = stack.enter_context(SmtpSink())
        options = dataclasses.replace(options, redis=f"redis://127.0.0.1:{redis.port}/0")
        env = {
            "KEYTURN_SMTP_URL": sink.url,
            "KEYTURN_LIMIT_SIGNUPS_PER_IP_PER_HOUR": UNLIMITED,
        }
        dep = stack.enter_context(
            deployment(options, workdir, password_hash, prefix="keyturn_soak", env=env)
        )
        server = dep.serve(options.workers)
        stack.callback(server.stop)
        flows = _flows(dep, server, workdir, nonce)
        saturated = _calibrate(
            Runner(wrk_path, options.threads, CALIBRATION_SECONDS, 1.0, 1), server, flows
        )
        capacity = {name: round(run.rps, 1) for name, run in saturated.items()}
        rates = {name: round(max(0.5, SHARE * c / len(flows)), 1) for name, c in capacity.items()}
        delays = {
            f.scenario.name: _delay_ms(f.soak_connections, rates[f.scenario.name],
                                       saturated[f.scenario.name])
            for f in flows
        }  # fmt: skip
        console.print(f"capacity {capacity}; soak rates {rates} for {options.minutes:g} min")
        probe = Probe(server.pid, dep.database.dsn, dep.database.name, options.redis, sink)
        probe.start()
        samples, results = _run_soak(wrk_path, server, flows, delays, probe, seconds)
        time.sleep(DRAIN_SECONDS)
        after = probe.sample(float(samples[-1]["t_s"]) + DRAIN_SECONDS)
        facts = {
            "commit": ran_on,
            "machine": {**host, "load_at_end": machine.load()},
            "workers": options.workers, "minutes": options.minutes, "share": SHARE,
            "capacity_rps": capacity, "target_rps": rates,
            "delay_ms": {name: round(value, 2) for name, value in delays.items()},
            "calibration": {name: run.as_dict() for name, run in saturated.items()},
            "audit_unsealed_rule": probe.audit_rule,
            "server_processes": {pid: command_line(pid) for pid in probe.pids},
        }  # fmt: skip
        return soak_report.finish(options, facts, samples, results, after)
