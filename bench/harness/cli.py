"""Entry point: ``python -m bench [--quick] [--users N] [--workers N] ...`` (see README)."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from bench.harness import (
    analysis,
    machine,
    options,
    pairs,
    peer_phases,
    phases,
    profiling,
    report,
    scaling,
    seed,
    soak,
)
from bench.harness.console import console
from bench.harness.scenarios import Runner
from bench.harness.servers import HarnessError
from bench.harness.wrk import ensure_wrk


def _stop_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    # Unwinds like Ctrl-C, so every ExitStack stops its servers and drops its databases.
    # Once: a second SIGTERM during the cleanup must not cut the cleanup short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    console.print("[yellow]SIGTERM: stopping servers, dropping databases[/yellow]")
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    opts = options.parse(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        wrk_path = ensure_wrk(opts.install_wrk)
    except HarnessError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    try:
        if opts.scaling:
            return scaling.run(opts, wrk_path)
        if opts.soak:
            return soak.run(opts, wrk_path)
    except HarnessError as exc:
        console.print(f"[red]benchmark failed:[/red] {exc}")
        return 1
    host = machine.describe()
    facts: dict[str, object] = {
        "command": " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)]),
        "machine": host,
        "options": {
            k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(opts).items()
        },
    }
    stamp = time.strftime("%Y-%m-%dT%H%M")
    profiles = opts.results_dir / f"profile-{stamp}" if opts.profile else None
    runner = Runner(wrk_path, opts.threads, opts.duration, opts.warmup, opts.runs, profiles)
    outcome = phases.Outcome()
    password_hash = seed.production_hash()
    rounds = pairs.Rounds()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="keyturn-bench-") as tmp,
            contextlib.ExitStack() as stack,
        ):
            workdir = Path(tmp)
            if opts.wants("keyturn") or opts.wants("oauth"):
                phases.keyturn_phase(opts, runner, workdir, outcome, password_hash, stack)
            if opts.peers and opts.wants("fastapi-users"):
                peer_phases.fastapi_users_phase(opts, runner, workdir, outcome, stack)
            if opts.peers and opts.wants("oidc-provider"):
                peer_phases.oidc_phase(opts, runner, workdir, outcome, stack)
            rounds = pairs.run(
                runner,
                outcome,
                opts.rounds,
                lambda: phases.hash_ceiling(opts, password_hash),
            )
    except HarnessError as exc:
        console.print(f"[red]benchmark failed:[/red] {exc}")
        return 1
    host["load_at_end"] = machine.load()
    if profiles is not None and profiles.exists():
        read = {
            path.stem.removeprefix("keyturn-"): profiling.Profile.read(path)
            for path in sorted(profiles.glob("*.txt"))
        }
        (profiles / "summary.md").write_text(profiling.summary(read), encoding="utf-8")
        console.print(f"profiles: {profiles}/summary.md")
    facts.update(outcome.facts)
    facts["paired_rounds"] = rounds.as_facts()
    ceiling = outcome.facts.get("raw_argon2id_verify_per_s")
    scale = analysis.scale_comparison(outcome.results, opts.users, opts.results_dir)
    peer_ceiling = outcome.facts.get("raw_argon2id_verify_per_s_fastapi_users_phase")
    ratios = analysis.ratios(outcome.results, ceiling, opts.workers, peer_ceiling)
    ratios += pairs.ratio_lines(rounds)
    targets = analysis.targets(
        outcome.results, ceiling, opts.workers, scale, rounds.medians(), len(rounds.rates)
    )
    measured = list(outcome.results.values())
    report.show(measured, outcome.pending, ratios, targets, facts)
    for path in report.write(opts.results_dir, measured, outcome.pending, ratios, targets, facts):
        console.print(f"wrote {path}")
    # Issue 7: no scenario may answer with errors (none of them expects any): the report is
    # written for diagnosis, and the run still fails.
    errored = [
        m.scenario.title for m in measured + rounds.measured if any(run.failed for run in m.runs)
    ]
    if errored:
        console.print(f"[red]scenarios with failed requests:[/red] {', '.join(errored)}")
        return 3
    return 0
