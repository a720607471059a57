"""Paired rounds: issue 18's ratio rows measured with both sides back to back.

The phases measure Keyturn first and each peer minutes later. On a shared VM the peers'
own rates moved 20-34 % between two full runs twelve minutes apart (performance report,
section 8), more than the gaps the rows judge, so a ratio of two phases' best runs says as
much about the neighbours as about the code. After every phase, with every server still
up and all but the measured one idle, each round measures the scenarios of the rows in
:data:`SLOTS` order, so that each row's two sides run next to each other, and every other
round in reverse order (A B, then B A), so that a drift within a round falls on both sides
alike. Each round gives each row one ratio; the targets table shows the median.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.harness import analysis as names
from bench.harness.console import console
from bench.harness.phases import Outcome
from bench.harness.report import Ratio
from bench.harness.scenarios import Measured, Runner

# One round's order: each row's numerator next to its denominator (RATIO_ROWS).
SLOTS = (
    names.HEALTHZ,
    names.ME_MANY,
    names.FU_ME,
    names.CLIENT_CREDENTIALS,
    names.OIDC_CLIENT_CREDENTIALS,
    names.INTROSPECT,
    names.OIDC_INTROSPECT,
    names.CEILING,
    names.LOGIN,
)


@dataclass
class Rounds:
    """What the paired rounds measured: per round, requests/s of each slot."""

    rates: list[dict[str, float]] = field(default_factory=list)
    measured: list[Measured] = field(default_factory=list)

    def ratios(self, row: names.RatioRow) -> list[float]:
        return [
            rates[row.numerator] / rates[row.denominator]
            for rates in self.rates
            if rates.get(row.numerator) and rates.get(row.denominator)
        ]

    def medians(self) -> dict[str, float]:
        """Each row's median ratio, for the rows measured in every round."""
        out = {}
        for row in names.RATIO_ROWS:
            ratios = self.ratios(row)
            if ratios and len(ratios) == len(self.rates):
                out[row.label] = statistics.median(ratios)
        return out

    def as_facts(self) -> dict[str, Any]:
        return {
            "rounds": [
                {name: round(rps, 1) for name, rps in rates.items()} for rates in self.rates
            ],
            "ratios": {
                row.label: [round(ratio, 3) for ratio in self.ratios(row)]
                for row in names.RATIO_ROWS
            },
            "medians": {label: round(value, 3) for label, value in self.medians().items()},
        }


def _slots(outcome: Outcome) -> list[str]:
    """The slots of the rows whose two sides this run can measure (both scenarios ran)."""
    available = {
        name
        for name, measured in outcome.results.items()
        if measured.scenario.target in outcome.servers
    }
    available.add(names.CEILING)
    rows = [
        row
        for row in names.RATIO_ROWS
        if row.numerator in available and row.denominator in available
    ]
    wanted = {name for row in rows for name in (row.numerator, row.denominator)}
    return [slot for slot in SLOTS if slot in wanted]


def run(runner: Runner, outcome: Outcome, rounds: int, ceiling: Callable[[], float]) -> Rounds:
    """Measures ``rounds`` rounds; ``ceiling()`` measures the raw argon2id verify rate."""
    single = dataclasses.replace(runner, runs=1, profile_dir=None)
    slots = _slots(outcome)
    found = Rounds()
    for number in range(rounds):
        order = slots if number % 2 == 0 else slots[::-1]
        console.print(f"[bold]paired round {number + 1} of {rounds}[/bold]: {', '.join(order)}")
        rates: dict[str, float] = {}
        for slot in order:
            if slot == names.CEILING:
                rates[slot] = ceiling()
                console.print(f"  raw argon2id verify: {rates[slot]:.1f}/s")
                continue
            prepare = outcome.prepare.get(slot)
            if prepare is not None:
                prepare()
            scenario = outcome.results[slot].scenario
            measured = single.measure(scenario, outcome.servers[scenario.target])
            found.measured.append(measured)
            rates[slot] = measured.best.rps
        found.rates.append(rates)
    return found


def ratio_lines(found: Rounds) -> list[Ratio]:
    """The ratios table's rows: each row's median, with every round's ratio in the note."""
    medians = found.medians()
    return [
        Ratio(
            f"paired rounds: {row.label}",
            medians[row.label],
            "rounds: " + ", ".join(f"{ratio:.2f}x" for ratio in found.ratios(row)),
        )
        for row in names.RATIO_ROWS
        if row.label in medians
    ]
