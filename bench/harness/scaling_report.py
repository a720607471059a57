"""The scaling run's table: req/s per worker count, the factor against one worker, and what
limits it (``bench/results/scaling-<date>[-quick].json`` and ``.md``).

What limits a run is read from the CPU each party used during it (procstat.py), in cores
(CPU seconds / wall seconds) on a machine of ``cores``:

- **machine CPU**: keyturn + PostgreSQL + Redis + wrk together use >= 85 % of all cores;
  the largest consumer is named (adding workers cannot help: they share the same cores);
- **keyturn CPU**: the workers use >= 85 % of one core each, the machine has room;
- **waits**: neither: the workers wait on something other than CPU (a lock, a round trip).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import machine
from bench.harness.console import console
from bench.harness.options import Options
from bench.harness.scenarios import Measured
from bench.harness.soak_report import commit

BUSY = 0.85
PARTIES = (("server", "keyturn"), ("postgres", "postgres"), ("wrk", "wrk"), ("redis", "redis"))
SHOWN = ("keyturn", "postgres", "wrk", "redis", "other")


def limit(cpu: dict[str, float], seconds: float, workers: int, cores: int) -> dict[str, Any]:
    """Cores each party kept busy, and the name of what limits the run.

    ``other`` is everything else the machine ran meanwhile (/proc/stat): on a shared
    machine it can be what takes the cores.
    """
    if not seconds:
        return {"cores_used": {}, "limit": "n/a"}
    used = {label: round(cpu[key] / seconds, 2) for key, label in PARTIES}
    machine_total = cpu.get("machine", 0.0) / seconds
    used["other"] = round(max(0.0, machine_total - sum(used.values())), 2)
    total = sum(used.values())
    if total >= BUSY * cores:
        top = max(used, key=lambda label: used[label])
        verdict = f"machine CPU ({total:.2f} of {cores} cores; most: {top})"
    elif used.get("keyturn", 0.0) >= BUSY * min(workers, cores):
        verdict = f"keyturn CPU ({used['keyturn']:.2f} cores for {workers} workers)"
    else:
        verdict = f"waits, not CPU ({total:.2f} of {cores} cores busy)"
    return {"cores_used": used, "limit": verdict}


def rows(measured: dict[int, list[Measured]], cores: int) -> list[dict[str, Any]]:
    base = {m.scenario.name: m.best.rps for m in measured[min(measured)]}
    out = []
    for workers, results in measured.items():
        for m in results:
            run = m.best
            out.append(
                {
                    "scenario": m.scenario.name,
                    "title": m.scenario.title,
                    "workers": workers,
                    "rps": round(run.rps, 1),
                    "factor_vs_1": round(run.rps / base[m.scenario.name], 2)
                    if base[m.scenario.name]
                    else None,
                    "p95_ms": run.percentile("95"),
                    "failed": run.failed,
                    "statuses_over_299": run.statuses,
                    **limit(m.cpu[m.best_index], run.duration_s, workers, cores),
                    "runs": [r.as_dict() for r in m.runs],
                    "cpu_seconds": m.cpu,
                }
            )
    return out


def per_keyturn_core(row: dict[str, Any]) -> str:
    """Requests per CPU-second of keyturn's processes: what a worker count costs per
    request, whatever share of the machine the run got."""
    busy = row["cores_used"].get("keyturn", 0.0)
    return f"{row['rps'] / busy:,.0f}" if busy else "n/a"


def markdown(table: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| scenario | workers | req/s | x 1 worker | req per keyturn CPU-s | p95 ms | failed"
        " | cores: keyturn / pg / wrk / redis / other | limit |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for row in sorted(table, key=lambda r: (r["scenario"], r["workers"])):
        used = row["cores_used"]
        cores = " / ".join(f"{used.get(label, 0.0):.2f}" for label in SHOWN)
        lines.append(
            f"| {row['title']} | {row['workers']} | {row['rps']:,.0f} | {row['factor_vs_1']:.2f}x"
            f" | {per_keyturn_core(row)} | {row['p95_ms']:.0f} | {row['failed']} | {cores}"
            f" | {row['limit']} |"
        )
    return lines


def main(argv: list[str]) -> int:
    """``python -m bench.harness.scaling_report scaling-<date>.json``: the table again."""
    report = json.loads(Path(argv[0]).read_text())
    print("\n".join(markdown(report["rows"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))


def finish(options: Options, facts: dict[str, Any], measured: dict[int, list[Measured]]) -> int:
    cores = os.cpu_count() or 1
    table = rows(measured, cores)
    now = datetime.now(UTC)
    stem = (
        options.results_dir
        / f"scaling-{now.strftime('%Y-%m-%d')}{'-quick' if options.quick else ''}"
    )
    report = {
        "written_at": now.isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": {**facts["machine"], "load_at_end": machine.load()},
        "options": {k: str(v) for k, v in dataclasses.asdict(options).items()},
        "workers": facts["workers"],
        "rows": table,
    }
    options.results_dir.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = [
        f"Scaling: `keyturn serve --workers N`, commit {report['commit']}, {cores} cores,"
        f" {options.duration:g} s runs, {options.runs} rounds through the worker counts"
        " (best shown)",
        "",
        *markdown(table),
    ]
    Path(f"{stem}.md").write_text("\n".join(text) + "\n")
    console.print("\n".join(text))
    console.print(f"wrote {stem}.json and {stem}.md")
    return 3 if any(row["failed"] for row in table) else 0
