"""Scenario definitions and the loop that runs one: warm-up, then measured runs.

Each measured run records wrk's numbers, the CPU seconds the server tree, PostgreSQL,
Redis and wrk used meanwhile (/proc), and the server's peak resident size per process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import profiling, wrk
from bench.harness.console import console
from bench.harness.procstat import CpuSnapshot, RssSampler, process_tree
from bench.harness.servers import Managed

# Pause between runs so queued work (commits, pool threads) drains before the next one.
SETTLE_SECONDS = 0.5


@dataclass(frozen=True)
class Scenario:
    """One wrk workload against one server.

    Attributes:
        name: File-safe id (``bench/results/<date>-<name>.json``).
        title: What the table shows, e.g. ``GET /v1/me (10,000 tokens)``.
        target: Which server answers (``keyturn``, ``fastapi-users``, ``oidc-provider``).
        script: A file of bench/lua/.
        path: Appended to the server's base URL.
        connections: wrk connections.
        env: Environment for the script (files, credentials).
        run_env: Extra environment per run (0 = warm-up), e.g. a refresh pool per run.
        delay_ms: Paced run: each connection waits this long between requests.
        pending: Why the scenario cannot run yet (it is then reported, not run).
        note: One line for the report.
        min_duration: Measured runs last at least this long (very slow answers).
        settle_s: Pause after each run, for the server to finish what is still queued.
    """

    name: str
    title: str
    target: str
    script: str
    path: str
    connections: int
    env: Mapping[str, str] = field(default_factory=dict)
    run_env: Callable[[int], Mapping[str, str]] | None = None
    delay_ms: float | None = None
    pending: str | None = None
    note: str = ""
    min_duration: float = 0.0
    settle_s: float = SETTLE_SECONDS


@dataclass
class Measured:
    """The measured runs of one scenario."""

    scenario: Scenario
    runs: list[wrk.WrkResult] = field(default_factory=list)
    cpu: list[dict[str, float]] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    companion: dict[str, Any] | None = None  # the other wrk of the mixed scenario

    @property
    def best_index(self) -> int:
        return max(range(len(self.runs)), key=lambda n: self.runs[n].rps)

    @property
    def best(self) -> wrk.WrkResult:
        return self.runs[self.best_index]

    def cpu_per_1000(self, who: str = "server") -> float:
        run = self.best
        return 1000 * self.cpu[self.best_index][who] / run.requests if run.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        scenario = self.scenario
        return {
            "name": scenario.name,
            "title": scenario.title,
            "target": scenario.target,
            "path": scenario.path,
            "script": scenario.script,
            "connections": scenario.connections,
            "delay_ms": scenario.delay_ms,
            "note": scenario.note,
            "runs": [
                {**run.as_dict(), "cpu_seconds": cpu}
                for run, cpu in zip(self.runs, self.cpu, strict=True)
            ],
            "best_run": self.best_index,
            "server_cpu_s_per_1000_requests": round(self.cpu_per_1000(), 3),
            "peak_rss_mb_per_process": self.peak_rss_mb,
            "companion": self.companion,
        }


@dataclass(frozen=True)
class Runner:
    """Runs scenarios with one wrk binary and one set of timing options."""

    wrk_path: str
    threads: int
    duration: float
    warmup: float
    runs: int
    # --profile: py-spy samples Keyturn's first measured run of each scenario into this folder.
    profile_dir: Path | None = None

    def job(self, scenario: Scenario, server: Managed, run: int, duration: float) -> wrk.WrkJob:
        env = dict(scenario.env)
        if scenario.run_env is not None:
            env.update(scenario.run_env(run))
        if scenario.delay_ms is not None:
            env["BENCH_DELAY_MS"] = f"{scenario.delay_ms:.3f}"
        return wrk.WrkJob(
            url=server.base_url + scenario.path,
            script=scenario.script,
            threads=self.threads,
            connections=scenario.connections,
            duration=duration,
            env=env,
        )

    def measure(self, scenario: Scenario, server: Managed, *, warm: bool = True) -> Measured:
        console.print(f"[bold]{scenario.target}[/bold] {scenario.title}")
        result = Measured(scenario)
        with RssSampler(server.pid) as rss:
            if warm and self.warmup > 0:
                wrk.run(self.wrk_path, self.job(scenario, server, 0, self.warmup))
                time.sleep(scenario.settle_s)
            duration = max(self.duration, scenario.min_duration)
            for run in range(1, self.runs + 1):
                pids = process_tree(server.pid)
                before = CpuSnapshot.take(pids)
                with self._sampling(scenario, server, run, duration):
                    outcome = wrk.run(self.wrk_path, self.job(scenario, server, run, duration))
                result.cpu.append(CpuSnapshot.take(pids).since(before))
                result.runs.append(outcome)
                console.print(
                    f"  run {run}: {outcome.rps:,.0f} req/s, p95 {outcome.percentile('95'):.1f} ms,"
                    f" failed {outcome.failed} {outcome.statuses or ''}"
                )
                time.sleep(scenario.settle_s)
        result.peak_rss_mb = rss.peak_per_process_mb()
        return result

    def _sampling(
        self, scenario: Scenario, server: Managed, run: int, duration: float
    ) -> AbstractContextManager[None]:
        if self.profile_dir is None or run != 1 or scenario.target != "keyturn":
            return nullcontext()
        return profiling.sampling(server.pid, self.profile_dir / f"{scenario.name}.txt", duration)

    def measure_together(self, primary: Scenario, companion: Scenario, server: Managed) -> Measured:
        """Runs two workloads at once; the result is ``primary``'s, with the other attached."""
        console.print(f"[bold]{primary.target}[/bold] {primary.title} while {companion.title}")
        result = Measured(primary)
        others: list[dict[str, Any]] = []
        with RssSampler(server.pid) as rss:
            for run in range(0 if self.warmup > 0 else 1, self.runs + 1):
                duration = self.warmup if run == 0 else self.duration
                pids = process_tree(server.pid)
                before = CpuSnapshot.take(pids)
                jobs = [self.job(s, server, run, duration) for s in (companion, primary)]
                processes = [wrk.start(self.wrk_path, job) for job in jobs]
                other, mine = (wrk.collect(p, j) for p, j in zip(processes, jobs, strict=True))
                used = CpuSnapshot.take(pids).since(before)
                time.sleep(SETTLE_SECONDS)
                if run == 0:
                    continue
                result.runs.append(mine)
                result.cpu.append(used)
                others.append({"title": companion.title, **other.as_dict()})
                console.print(
                    f"  run {run}: p95 {mine.percentile('95'):.1f} ms at {mine.rps:,.0f} req/s;"
                    f" companion {other.rps:,.0f} req/s,"
                    f" failed {other.failed} {other.statuses or ''}"
                )
        result.peak_rss_mb = rss.peak_per_process_mb()
        result.companion = {"runs": others}
        return result
