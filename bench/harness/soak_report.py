"""The soak's output: a line per sample while it runs, then the JSON, the markdown and the
verdicts (``bench/results/soak-<UTC time>.json`` and ``.md``)."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import soak_analysis
from bench.harness.console import console
from bench.harness.options import REPO_DIR, Options
from bench.harness.wrk import WrkResult


def progress_line(sample: dict[str, Any]) -> str:
    rss = [v for k, v in sample.items() if k.startswith("rss_mb.")]
    fds = [v for k, v in sample.items() if k.startswith("fds.")]
    return (
        f"t={sample['t_s']:>6.0f}s rss MB {rss} fds {fds} pg {sample['pg_connections']}"
        f" redis {sample['redis_used_memory_mb']} MB {sample['redis_keys']} keys"
        f" ({sample['redis_keys_without_ttl']} no TTL) outbox {sample['outbox_depth']}"
        f" unsealed {sample['audit_unsealed']} mails {sample['mails_received']}"
    )


def commit() -> str:
    """The commit the soak ran on (``+dirty`` when the worktree had changes)."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(REPO_DIR), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    return git("rev-parse", "--short=12", "HEAD") + (
        "+dirty" if git("status", "--porcelain") else ""
    )


def flows_markdown(results: dict[str, Any], target: dict[str, float]) -> list[str]:
    lines = [
        "| flow | target req/s | reached req/s | requests | p50 ms | p95 ms | p99 ms | failed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, run in results.items():
        p = run["latency_ms"]["percentiles"]
        failed = str(sum(run["errors"].values()))
        if run["statuses_over_299"]:
            failed += f" {run['statuses_over_299']}"
        lines.append(
            f"| {name} | {target[name]:.1f} | {run['rps']:.1f} | {run['requests']:,} |"
            f" {p['50']:.1f} | {p['95']:.1f} | {p['99']:.1f} | {failed} |"
        )
    return lines


def finish(
    options: Options,
    facts: dict[str, Any],
    samples: list[dict[str, Any]],
    results: dict[str, WrkResult],
    after: dict[str, Any],
) -> int:
    """Judges the series, writes the files, prints the tables; the exit status."""
    verdicts = soak_analysis.verdicts(samples)
    flows = {name: result.as_dict() for name, result in results.items()}
    failed = sum(result.failed for result in results.values())
    signups = results["signup"].requests - sum(results["signup"].statuses.values())
    now = datetime.now(UTC)
    report = {
        "written_at": now.isoformat(timespec="seconds"),
        **facts,
        "thresholds": {"relative": soak_analysis.RELATIVE, "floor_per_hour": soak_analysis.FLOORS},
        "flows": flows,
        "failed_requests": failed,
        "signups_accepted_about": signups,
        "after_drain": after,
        "verdicts": verdicts,
        "samples": samples,
    }
    stem = options.results_dir / f"soak-{now.strftime('%Y-%m-%dT%H%M')}"
    options.results_dir.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = [
        f"Soak: {facts['minutes']:g} min, {facts['workers']} workers, commit {report['commit']},"
        f" {len(samples)} samples every 30 s; after a {after['t_s'] - samples[-1]['t_s']:.0f} s"
        f" drain: outbox {after['outbox_depth']}, mails received {after['mails_received']}"
        f" (signups accepted ~{signups}), audit unsealed {after['audit_unsealed']}.",
        "",
        *flows_markdown(flows, facts["target_rps"]),
        "",
        *soak_analysis.markdown(verdicts),
    ]
    Path(f"{stem}.md").write_text("\n".join(text) + "\n")
    console.print("\n".join(text))
    console.print(f"wrote {stem}.json and {stem}.md")
    growing = [v["series"] for v in verdicts if v["verdict"] == "growing"]
    if growing:
        console.print(f"[red]growing:[/red] {', '.join(growing)}")
    return 0 if not growing and failed == 0 else 3
