"""The bench's paired rounds (bench/harness/pairs.py): order, ratios, medians, targets.

Made-up measurements through a stand-in for wrk; nothing here runs a server or reads a clock.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.harness import analysis, pairs
from bench.harness.phases import Outcome
from bench.harness.scenarios import Measured, Runner, Scenario
from bench.harness.servers import Managed
from tests.unit.test_bench_targets import by_label, measured, results


def outcome_with(names: dict[str, str]) -> Outcome:
    """An outcome whose phases measured ``names`` (scenario -> target), servers up."""
    outcome = Outcome()
    for name, target in names.items():
        outcome.add(measured(name, 1.0, target=target))
        outcome.servers[target] = Managed(target, 1, None, Path("/dev/null"))  # type: ignore[arg-type]
    return outcome


ALL = {
    analysis.HEALTHZ: "keyturn",
    analysis.ME_MANY: "keyturn",
    analysis.FU_ME: "fastapi-users",
    analysis.CLIENT_CREDENTIALS: "keyturn",
    analysis.OIDC_CLIENT_CREDENTIALS: "oidc-provider",
    analysis.INTROSPECT: "keyturn",
    analysis.OIDC_INTROSPECT: "oidc-provider",
    analysis.LOGIN: "keyturn",
}


class Script:
    """Stands in for wrk: each scenario's rate per round, and the order it was asked in."""

    def __init__(self, rates: list[dict[str, float]]) -> None:
        self.rates = rates
        self.asked: list[str] = []

    def measure(self, runner: Runner, scenario: Scenario, server: Managed) -> Measured:
        assert runner.runs == 1
        assert runner.profile_dir is None
        assert server is not None
        self.asked.append(scenario.name)
        number = sum(1 for name in self.asked if name == scenario.name) - 1
        return measured(scenario.name, self.rates[number][scenario.name], target=scenario.target)


def run_rounds(
    monkeypatch: pytest.MonkeyPatch, outcome: Outcome, rates: list[dict[str, float]]
) -> tuple[pairs.Rounds, list[str]]:
    script = Script(rates)
    monkeypatch.setattr(
        Runner,
        "measure",
        lambda runner, scenario, server, **_: script.measure(runner, scenario, server),
    )
    ceilings = iter(rate[analysis.CEILING] for rate in rates)

    def ceiling() -> float:
        script.asked.append(analysis.CEILING)
        return next(ceilings)

    runner = Runner("wrk", 1, 10.0, 3.0, 2, Path("profiles"))
    return pairs.run(runner, outcome, len(rates), ceiling), script.asked


def rates(scale: float = 1.0, **overrides: float) -> dict[str, float]:
    base = {
        analysis.HEALTHZ: 2_000.0,
        analysis.ME_MANY: 1_000.0,
        analysis.FU_ME: 300.0,
        analysis.CLIENT_CREDENTIALS: 1_500.0,
        analysis.OIDC_CLIENT_CREDENTIALS: 3_000.0,
        analysis.INTROSPECT: 2_000.0,
        analysis.OIDC_INTROSPECT: 4_000.0,
        analysis.LOGIN: 64.0,
        analysis.CEILING: 80.0,
    }
    return {name: value * scale for name, value in {**base, **overrides}.items()}


def test_each_round_measures_both_sides_of_every_row_and_every_other_round_reversed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found, asked = run_rounds(monkeypatch, outcome_with(ALL), [rates(), rates(), rates()])
    assert asked == list(pairs.SLOTS) + list(reversed(pairs.SLOTS)) + list(pairs.SLOTS)
    assert len(found.rates) == 3
    assert len(found.measured) == 3 * (len(pairs.SLOTS) - 1)


def test_each_row_is_the_median_of_its_rounds_ratios(monkeypatch: pytest.MonkeyPatch) -> None:
    # The neighbours slow the whole machine by half in round 2: each round's ratio holds.
    rounds = [
        rates(),
        rates(0.5),
        rates(**{analysis.OIDC_INTROSPECT: 2_000.0, analysis.LOGIN: 72.0}),
    ]
    found, _ = run_rounds(monkeypatch, outcome_with(ALL), rounds)
    medians = found.medians()
    labels = [row.label for row in analysis.RATIO_ROWS]
    assert medians == {
        labels[0]: 0.5,
        labels[1]: pytest.approx(1_000 / 300),
        labels[2]: 0.5,
        labels[3]: 0.5,  # rounds 0.5, 0.5, 1.0
        labels[4]: 0.8,  # rounds 0.8, 0.8, 0.9
    }
    assert found.ratios(analysis.RATIO_ROWS[3]) == [0.5, 0.5, 1.0]
    facts = found.as_facts()
    assert facts["medians"][labels[4]] == 0.8
    assert facts["rounds"][1][analysis.HEALTHZ] == 1_000.0
    notes = {line.label: line.note for line in pairs.ratio_lines(found)}
    assert notes[f"paired rounds: {labels[3]}"] == "rounds: 0.50x, 0.50x, 1.00x"


def test_rows_whose_peer_did_not_run_are_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    keyturn_only = {name: target for name, target in ALL.items() if target == "keyturn"}
    found, asked = run_rounds(monkeypatch, outcome_with(keyturn_only), [rates()])
    assert asked == [analysis.HEALTHZ, analysis.ME_MANY, analysis.CEILING, analysis.LOGIN]
    assert set(found.medians()) == {
        "GET /v1/me (many tokens) / GET /healthz",
        "login / raw argon2id verify ceiling",
    }


def test_a_scenario_is_prepared_again_before_each_measurement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outcome = outcome_with(ALL)
    prepared: list[int] = []
    outcome.prepare[analysis.OIDC_INTROSPECT] = lambda: prepared.append(1)
    run_rounds(monkeypatch, outcome, [rates(), rates()])
    assert prepared == [1, 1]


def test_targets_show_the_paired_median_instead_of_the_phases_best_runs() -> None:
    label = "introspection / node-oidc-provider"
    rows = by_label(
        analysis.targets(results(), 100.0, 1, None, paired={label: 0.55}, paired_rounds=3)
    )
    row = rows[f"{label} (median of 3 paired rounds)"]
    assert (row.measured, row.met) == ("0.55x", True)
    # The phases' best runs (0.10x) would not have met it; rows without a median keep them.
    assert label not in rows
    assert rows["client_credentials (JWT ES256) / node-oidc-provider"].measured == "0.50x"
