"""deploy/prometheus/keyturn-alerts.yaml and deploy/grafana/keyturn-dashboard.json: well
formed, and every query names only metric families a running Keyturn exposes.

``promtool`` is not installed on our machines: the rule file's structure is checked here
instead (and by promtool too wherever it is on the PATH).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "deploy" / "prometheus" / "keyturn-alerts.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "keyturn-dashboard.json"
# Written by Prometheus itself for every scrape target, not by Keyturn.
PROMETHEUS_SERIES = {"up"}
PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "bool", "offset"}
PROMQL_KEYWORDS |= {"group_left", "group_right", "inf", "nan"}
RULE_KEYS = {"alert", "expr", "for", "labels", "annotations"}
SEVERITIES = {"critical", "warning", "info"}
DURATION = re.compile(r"^\d+[smhdwy]$")


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (functions, label names and
    keywords removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery windows
    grouping = r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
    text = re.sub(grouping, "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name = match.group()
        follows = text[match.end() :].lstrip()
        if follows.startswith("(") or name.lower() in PROMQL_KEYWORDS:
            continue  # a function or aggregation, or an operator keyword
        if re.fullmatch(r"\d*[smhdwy]", name) or text[match.start() - 1 : match.start()].isdigit():
            continue  # a duration or a number's exponent/suffix
        names.add(name)
    return names


def route_values(expr: str) -> set[str]:
    """The route templates a ``route="..."`` / ``route=~"a|b"`` matcher names."""
    values: set[str] = set()
    for match in re.finditer(r'\broute\s*=~?\s*"([^"]*)"', expr):
        values.update(match.group(1).split("|"))
    return values


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(metric, label): the metric is the first argument.
            inner = re.fullmatch(r"label_values\((\w+),\s*\w+\)", variable["definition"])
            assert inner, variable["definition"]
            queries.append(inner.group(1))
    return queries


def test_the_extractor_finds_names_and_only_names() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(a_b_bucket{route=~"x|y"}[5m])))'
        " / c > 2e3"
    )
    assert metric_names(expr) == {"a_b_bucket", "c"}
    assert route_values(expr) == {"x", "y"}
    assert metric_names("max(up) or vector(0)") == {"up"}


def test_the_alert_rule_file_is_well_formed() -> None:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    names = [group["name"] for group in document["groups"]]
    assert len(names) == len(set(names))
    alerts = []
    for group in document["groups"]:
        assert set(group) == {"name", "rules"}
        assert group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= RULE_KEYS, rule
            assert {"alert", "expr"} <= set(rule), rule
            assert re.fullmatch(r"Keyturn[A-Z][A-Za-z]+", rule["alert"])
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
            assert DURATION.match(rule.get("for", "0s")), rule["alert"]
            assert rule["labels"]["severity"] in SEVERITIES
            assert {"summary", "description"} <= set(rule["annotations"])
            alerts.append(rule["alert"])
    assert len(alerts) == len(set(alerts))
    promtool = shutil.which("promtool")
    if promtool:  # not on our machines; used wherever it is installed
        subprocess.run([promtool, "check", "rules", str(ALERTS)], check=True)


async def test_every_query_names_a_family_that_metrics_exposes(
    app: FastAPI, client: httpx.AsyncClient, scrape
) -> None:
    exposed = (await scrape(client)).names | PROMETHEUS_SERIES
    templates = {str(context.path) for context in iter_route_contexts(app.routes)}
    queries = {f"alert {rule['alert']}": rule["expr"] for rule in alert_rules()}
    queries.update({f"dashboard query {i}": q for i, q in enumerate(dashboard_queries())})
    used: set[str] = set()
    for where, expr in queries.items():
        names = metric_names(expr)
        assert names, f"{where} selects nothing: {expr}"
        assert names <= exposed, f"{where} uses {sorted(names - exposed)}"
        assert route_values(expr) <= templates, f"{where}: {route_values(expr) - templates}"
        used |= names
    # The rules and the dashboard cover the families issue 16 asks to watch.
    for family in (
        "keyturn_readiness_check_up",
        "keyturn_hash_pool_in_flight",
        "keyturn_outbox_oldest_pending_age_seconds",
        "keyturn_audit_seal_lag_seconds",
        "keyturn_redis_errors_total",
        "keyturn_signing_key_age_seconds",
        "keyturn_refresh_reuse_detections_total",
        "keyturn_db_pool_checked_out",
    ):
        assert family in used, family
