"""Markdown tables from a run's summary, for the performance report in docs/technical/.

``.venv/bin/python -m bench.harness.markdown bench/results/<date>-summary.json``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.harness.report import target_status


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def scenarios(summary: dict[str, Any]) -> list[str]:
    header = ["server", "scenario", "req/s", "p50 ms", "p95 ms", "p99 ms", "failed"]
    header += ["server CPU s / 1k req", "peak RSS MB"]
    lines = [_row(header), _row(["---"] * 2 + ["---:"] * 7)]
    for item in summary["scenarios"]:
        lines.append(
            _row(
                [
                    item["target"],
                    item["title"],
                    _number(item["rps"]),
                    _number(item["p50_ms"]),
                    _number(item["p95_ms"]),
                    _number(item["p99_ms"]),
                    str(item["failed"]),
                    f"{item['server_cpu_s_per_1000_requests']:.2f}",
                    f"{item['peak_rss_mb_per_process']:.0f}",
                ]
            )
        )
    for item in summary["pending"]:
        lines.append(_row(["keyturn", item["title"], "not available yet", *[""] * 6]))
    return lines


def ratios(summary: dict[str, Any]) -> list[str]:
    lines = [_row(["ratio", "value", "note"]), _row(["---", "---:", "---"])]
    for item in summary["ratios"]:
        value = "n/a" if item["value"] is None else f"{item['value']:.2f}x"
        lines.append(_row([item["ratio"], value, item["note"]]))
    return lines


def targets(summary: dict[str, Any]) -> list[str]:
    lines = [_row(["target", "now", "goal", "moonshot", "status"]), _row(["---"] * 5)]
    for item in summary["targets"]:
        # Summaries written before issue 18 have no moonshot fields.
        status = target_status(item["met"], item.get("moonshot_met"))
        shown = "**not met**" if status == "not met" else status
        row = [item["target"], item["measured"], item["goal"], item.get("moonshot", ""), shown]
        lines.append(_row(row))
    return lines


def main(argv: list[str]) -> int:
    summary = json.loads(Path(argv[0]).read_text())
    for block in (scenarios(summary), ratios(summary), targets(summary)):
        print("\n".join(block), end="\n\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
