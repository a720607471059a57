"""The results table, the ratios, the targets, and the JSON files in bench/results/.

Targets are reported, never asserted (DESIGN.md section 8): a missed target is a finding.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.harness.console import console
from bench.harness.scenarios import Measured, Scenario
from bench.harness.wrk import WrkResult

# Keycloak's published sizing figures (per vCPU, and memory per pod).
KEYCLOAK_PER_VCPU = {"login": 15.0, "client_credentials": 120.0, "refresh": 120.0}
KEYCLOAK_POD_MB = 1250.0


@dataclass(frozen=True)
class Target:
    """One row of the targets table: what this run measured ("now") against the goal.

    ``moonshot`` is the issue's stretch goal (empty for rows that have none);
    ``moonshot_met`` is None when there is none or nothing was measured.
    """

    label: str
    measured: str
    goal: str
    met: bool | None  # None: not measured in this run (pending or not asked for)
    moonshot: str = ""
    moonshot_met: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.label,
            "measured": self.measured,
            "goal": self.goal,
            "met": self.met,
            "moonshot": self.moonshot,
            "moonshot_met": self.moonshot_met,
        }


def target_status(met: bool | None, moonshot_met: bool | None) -> str:
    """The status word of a target row (plain text; the tables add colour)."""
    if met is None:
        return "n/a"
    if moonshot_met:
        return "moonshot met"
    return "met" if met else "not met"


@dataclass(frozen=True)
class Ratio:
    label: str
    value: float | None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        value = None if self.value is None else round(self.value, 3)
        return {"ratio": self.label, "value": value, "note": self.note}


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _failed(run: WrkResult) -> str:
    shown = str(run.failed)
    if run.statuses:
        shown += " (" + ", ".join(f"{code}: {n}" for code, n in run.statuses.items()) + ")"
    if run.exhausted:
        shown += f" [pool ran dry {run.exhausted}x]"
    return shown


def results_table(results: list[Measured], pending: list[Scenario]) -> Table:
    table = Table(title="Keyturn benchmark (best of the measured runs)", show_lines=False)
    for header in (
        "server",
        "scenario",
        "conns",
        "req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "failed",
        "server CPU s/1k",
        "peak RSS MB",
        "pg CPU s",
        "redis CPU s",
        "wrk CPU s",
    ):
        table.add_column(header, justify="left" if header in ("server", "scenario") else "right")
    for measured in results:
        run, cpu = measured.best, measured.cpu[measured.best_index]
        table.add_row(
            measured.scenario.target,
            measured.scenario.title,
            str(measured.scenario.connections),
            f"{run.rps:,.0f}",
            _ms(run.percentile("50")),
            _ms(run.percentile("95")),
            _ms(run.percentile("99")),
            _failed(run),
            f"{measured.cpu_per_1000():.2f}",
            f"{measured.peak_rss_mb:.0f}",
            f"{cpu['postgres']:.1f}",
            f"{cpu['redis']:.1f}",
            f"{cpu['wrk']:.1f}",
        )
    for scenario in pending:
        table.add_row(scenario.target, scenario.title, "", "not available yet", *[""] * 9)
    return table


def targets_table(targets: list[Target]) -> Table:
    table = Table(title="Targets (reported, not asserted)")
    for header in ("target", "now", "goal", "moonshot", "status"):
        table.add_column(header)
    colour = {"met": "green", "moonshot met": "bold green", "not met": "red"}
    for target in targets:
        status = target_status(target.met, target.moonshot_met)
        shown = f"[{colour[status]}]{status}[/{colour[status]}]" if status in colour else status
        table.add_row(target.label, target.measured, target.goal, target.moonshot, shown)
    return table


def ratios_table(ratios: list[Ratio]) -> Table:
    table = Table(title="Ratios")
    table.add_column("ratio")
    table.add_column("value", justify="right")
    table.add_column("note")
    for ratio in ratios:
        value = "n/a" if ratio.value is None else f"{ratio.value:.2f}x"
        table.add_row(ratio.label, value, ratio.note)
    return table


def show(
    results: list[Measured],
    pending: list[Scenario],
    ratios: list[Ratio],
    targets: list[Target],
    facts: Mapping[str, Any],
) -> None:
    console.print(results_table(results, pending))
    console.print(ratios_table(ratios))
    console.print(targets_table(targets))
    machine = facts["machine"]
    console.print(
        f"machine: {machine['cores']} cores, {machine['cpu_model']}, {machine['memory_gb']} GB;"
        f" load average at start {machine['load_at_start']}, at end {machine['load_at_end']}"
    )


def _variant(options: Mapping[str, Any]) -> str:
    parts = []
    if options.get("quick"):
        parts.append("quick")
    if options.get("users", 100_000) != 100_000:
        parts.append(f"users{options['users']}")
    if options.get("workers", 1) != 1:
        parts.append(f"workers{options['workers']}")
    if options.get("server", "uvicorn") != "uvicorn":
        parts.append(str(options["server"]))
    return "".join(f"-{part}" for part in parts)


def write(
    directory: Path,
    results: list[Measured],
    pending: list[Scenario],
    ratios: list[Ratio],
    targets: list[Target],
    facts: Mapping[str, Any],
) -> list[Path]:
    """One JSON file per scenario plus ``<date>[-variant]-summary.json``; returns the paths.

    A run that is not the default shape (users, workers, server, quick) carries a variant
    in its names, so the 1,000,000-user or granian run of a day does not overwrite that
    day's default run (which the scale comparison reads).
    """
    directory.mkdir(parents=True, exist_ok=True)
    date = datetime.now(UTC).strftime("%Y-%m-%d") + _variant(facts.get("options", {}))
    common = {"written_at": datetime.now(UTC).isoformat(timespec="seconds"), **facts}
    paths = []
    for measured in results:
        path = directory / f"{date}-{measured.scenario.name}.json"
        path.write_text(json.dumps({**common, "scenario": measured.as_dict()}, indent=2) + "\n")
        paths.append(path)
    summary = {
        **common,
        "scenarios": [
            {
                "name": m.scenario.name,
                "title": m.scenario.title,
                "target": m.scenario.target,
                "rps": round(m.best.rps, 1),
                "p50_ms": m.best.percentile("50"),
                "p95_ms": m.best.percentile("95"),
                "p99_ms": m.best.percentile("99"),
                "failed": m.best.failed,
                "server_cpu_s_per_1000_requests": round(m.cpu_per_1000(), 3),
                "peak_rss_mb_per_process": m.peak_rss_mb,
            }
            for m in results
        ],
        "pending": [{"name": s.name, "title": s.title, "reason": s.pending} for s in pending],
        "ratios": [ratio.as_dict() for ratio in ratios],
        "targets": [target.as_dict() for target in targets],
    }
    path = directory / f"{date}-summary.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    paths.append(path)
    return paths
