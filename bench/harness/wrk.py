"""Running wrk: install it if missing, run one script, parse the JSON its done() prints.

Every scenario script ends with ``report.done`` (bench/lua/report.lua), which prints one
``BENCH_JSON {...}`` line: request count, duration, socket errors, non-2xx/3xx count and
latency percentiles from wrk's own histogram.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.harness.options import LUA_DIR
from bench.harness.servers import HarnessError

MARKER = "BENCH_JSON "
SOCKET_TIMEOUT = "10s"


def ensure_wrk(mode: str) -> str:
    """The wrk executable; installs the Debian package when missing and allowed."""
    found = shutil.which("wrk")
    if found:
        return found
    if mode == "never":
        raise HarnessError("wrk is not installed (apt-get install -y wrk)")
    if mode == "ask":
        answer = input("wrk is missing: run `apt-get install -y wrk` now? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise HarnessError("wrk is not installed (apt-get install -y wrk)")
    elif os.geteuid() != 0:
        raise HarnessError("wrk is missing and this is not root: sudo apt-get install -y wrk")
    command = ["apt-get", "install", "-y", "wrk"]
    if subprocess.run(command, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], check=False)
        subprocess.run(command, check=True)
    found = shutil.which("wrk")
    if not found:
        raise HarnessError("apt-get did not install wrk")
    return found


@dataclass(frozen=True)
class WrkResult:
    """One wrk run, latencies in milliseconds."""

    requests: int
    duration_s: float
    errors: dict[str, int]
    latency_ms: dict[str, Any]
    exhausted: int
    statuses: dict[str, int]

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def failed(self) -> int:
        """Non-2xx/3xx answers plus socket errors (connect, read, write, timeout)."""
        return sum(self.errors.values())

    def percentile(self, p: str) -> float:
        return float(self.latency_ms["percentiles"][p])

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "duration_s": self.duration_s,
            "rps": round(self.rps, 1),
            "errors": self.errors,
            "latency_ms": self.latency_ms,
            "pool_exhausted": self.exhausted,
            "statuses_over_299": self.statuses,
        }


@dataclass(frozen=True)
class WrkJob:
    """What one wrk process runs."""

    url: str
    script: str
    threads: int
    connections: int
    duration: float
    env: Mapping[str, str]

    def argv(self, wrk: str) -> list[str]:
        return [
            wrk,
            f"-t{min(self.threads, self.connections)}",
            f"-c{self.connections}",
            f"-d{max(1, round(self.duration))}s",
            f"--timeout={SOCKET_TIMEOUT}",
            "--latency",
            "-s",
            str(LUA_DIR / self.script),
            self.url,
        ]

    def environment(self) -> dict[str, str]:
        threads = min(self.threads, self.connections)
        return {
            **os.environ,
            "BENCH_LUA_DIR": str(LUA_DIR),
            "BENCH_THREADS": str(threads),
            **self.env,
        }


def start(wrk: str, job: WrkJob) -> subprocess.Popen[str]:
    return subprocess.Popen(
        job.argv(wrk),
        env=job.environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def collect(process: subprocess.Popen[str], job: WrkJob) -> WrkResult:
    try:
        stdout, stderr = process.communicate(timeout=job.duration + 60)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return parse(stdout, stderr, process.returncode)


def run(wrk: str, job: WrkJob) -> WrkResult:
    return collect(start(wrk, job), job)


def parse(stdout: str, stderr: str, returncode: int) -> WrkResult:
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER) :])
            return WrkResult(
                requests=int(data["requests"]),
                duration_s=float(data["duration_s"]),
                errors={name: int(value) for name, value in data["errors"].items()},
                latency_ms=data["latency_ms"],
                exhausted=int(data.get("exhausted", 0)),
                statuses=_merge(data.get("statuses_by_thread", [])),
            )
    print(stdout, stderr, file=sys.stderr)
    raise HarnessError(f"wrk printed no result (exit {returncode}): {stderr.strip()[:500]}")


def _merge(per_thread: list[dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for counts in per_thread:
        for code, count in counts.items():
            merged[code] = merged.get(code, 0) + int(count)
    return dict(sorted(merged.items()))
