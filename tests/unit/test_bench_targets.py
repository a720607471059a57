"""The bench's targets table (issue 18): now, goal, moonshot and status per row.

Pure functions over made-up measurements; nothing here runs a server or reads a clock.
"""

from __future__ import annotations

from typing import Any

import pytest
from bench.harness import analysis, markdown
from bench.harness.report import Target, target_status
from bench.harness.scenarios import Measured, Scenario
from bench.harness.wrk import WrkResult


def measured(name: str, rps: float, *, p95: float = 1.0, target: str = "keyturn") -> Measured:
    run = WrkResult(
        requests=int(rps * 10),
        duration_s=10.0,
        errors={},
        latency_ms={"percentiles": {"50": p95 / 2, "95": p95, "99": p95 * 2}},
        exhausted=0,
        statuses={},
    )
    result = Measured(Scenario(name, name, target, "plain.lua", "/", 1), runs=[run])
    result.cpu.append({"server": 1.0, "postgres": 0.0, "redis": 0.0, "wrk": 0.0})
    return result


def results(**overrides: Any) -> dict[str, Measured]:
    values: dict[str, Measured] = {
        analysis.HEALTHZ: measured(analysis.HEALTHZ, 10_000),
        analysis.ME_MANY: measured(analysis.ME_MANY, 8_000),
        analysis.FU_ME: measured(analysis.FU_ME, 2_000, target="fastapi-users"),
        analysis.CLIENT_CREDENTIALS: measured(analysis.CLIENT_CREDENTIALS, 4_000),
        analysis.OIDC_CLIENT_CREDENTIALS: measured(
            analysis.OIDC_CLIENT_CREDENTIALS, 8_000, target="oidc-provider"
        ),
        analysis.INTROSPECT: measured(analysis.INTROSPECT, 1_000),
        analysis.OIDC_INTROSPECT: measured(
            analysis.OIDC_INTROSPECT, 10_000, target="oidc-provider"
        ),
        analysis.LOGIN: measured(analysis.LOGIN, 85),
        analysis.MIXED: measured(analysis.MIXED, 300, p95=20.0),
    }
    values.update(overrides)
    for item in values.values():
        if item.scenario.target == "keyturn":
            item.peak_rss_mb = 150.0
    return values


def by_label(rows: list[Target]) -> dict[str, Target]:
    return {row.label: row for row in rows}


def test_issue_18_rows_come_first_with_goal_moonshot_and_status() -> None:
    rows = analysis.targets(results(), hash_ceiling=100.0, workers=1, scale=None)
    first = rows[:7]
    assert [(row.measured, row.goal, row.moonshot) for row in first] == [
        ("0.80x", ">= 0.5x", ">= 0.7x"),
        ("4.00x", ">= 3x", ">= 5x"),
        ("0.50x", ">= 0.5x", ">= 1x"),
        ("0.10x", ">= 0.5x", ">= 1x"),
        ("0.85x", ">= 0.8x", ">= 0.9x"),
        ("20.00 ms", "< 25 ms", "< 10 ms"),
        ("150.00 MB", "< 200 MB", "< 120 MB"),
    ]
    statuses = [target_status(row.met, row.moonshot_met) for row in first]
    assert statuses == ["moonshot met", "met", "met", "not met", "met", "met", "met"]
    # Issue 7's rows that still matter follow, without a moonshot.
    rest = by_label(rows[7:])
    assert {"login per worker", "refresh per worker", "client_credentials per worker"} <= set(rest)
    assert all(row.moonshot == "" and row.moonshot_met is None for row in rows[7:])


@pytest.mark.parametrize(
    ("p95", "status"), [(9.0, "moonshot met"), (10.0, "met"), (24.9, "met"), (25.0, "not met")]
)
def test_latency_rows_are_met_strictly_below_the_bound(p95: float, status: str) -> None:
    rows = analysis.targets(
        results(**{analysis.MIXED: measured(analysis.MIXED, 300, p95=p95)}),
        hash_ceiling=100.0,
        workers=1,
        scale=None,
    )
    row = by_label(rows)["GET /v1/me p95 while logins saturate the hash pool"]
    assert target_status(row.met, row.moonshot_met) == status


def test_rows_without_a_peer_are_not_applicable() -> None:
    without_peers = {
        name: item for name, item in results().items() if item.scenario.target == "keyturn"
    }
    rows = by_label(analysis.targets(without_peers, hash_ceiling=None, workers=1, scale=None))
    for label in (
        "GET /v1/me (many tokens) / fastapi-users GET /users/me",
        "client_credentials (JWT ES256) / node-oidc-provider",
        "introspection / node-oidc-provider",
        "login / raw argon2id verify ceiling",
    ):
        assert (rows[label].measured, rows[label].met, rows[label].moonshot_met) == (
            "n/a",
            None,
            None,
        )
        assert rows[label].moonshot  # the goal is still shown


def test_markdown_prints_the_moonshot_and_reads_older_summaries() -> None:
    summary = {
        "targets": [
            Target("new", "0.80x", ">= 0.5x", True, ">= 0.7x", True).as_dict(),
            {"target": "old", "measured": "1", "goal": ">= 2", "met": False},
        ]
    }
    lines = markdown.targets(summary)
    assert lines[2] == "| new | 0.80x | >= 0.5x | >= 0.7x | moonshot met |"
    assert lines[3] == "| old | 1 | >= 2 |  | **not met** |"
