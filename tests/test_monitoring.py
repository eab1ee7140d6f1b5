"""The monitoring pack: Prometheus alert rules and the Grafana dashboard (issue 15).

``promtool`` (Debian's prometheus package; .ci/run installs it) checks the rules, runs
their unit tests and parses every dashboard query. Each metric a rule or a panel names must
be one a real StateRelay exports: the test scrapes ``/metrics`` of an app with Redis on.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from staterelay.app.factory import create_app
from staterelay.settings import RedisSettings, Settings
from tests.deployfiles import ROOT
from tests.redis_support import delete_prefixed, require_redis, unique_prefix
from tests.test_service_files import tool

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "staterelay.json"
# What the product design asks alerts for, by the alert that covers it.
DESIGN_ALERTS = {
    "StateRelaySlowAnswers",  # p95 > 2 s
    "StateRelayChangeReportFailures",  # ChangeReport failures > 1 %
    "StateRelayTokenErrors",  # token errors > 10/min
    "StateRelayDatabasePoolBusy",  # pool use > 80 %
    "StateRelayOutboxBacklog",  # outbox oldest-pending age
    "StateRelayDeadDeliveries",  # dead rows
    "StateRelayDiskLow",  # disk free
    "StateRelayNotReady",  # ready
}
# Not StateRelay's: Prometheus adds ``up`` to every target it scrapes.
PROMETHEUS_MADE = {"up"}
_PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
_PROMQL_KEYWORDS |= {"and", "or", "unless", "offset", "inf", "nan"}


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of alerts.yml."""
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    """Every query of every panel, ``$instance`` as the "All" it defaults to."""
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [
        target["expr"]
        for panel in document["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    return [query.replace("$instance", ".*") for query in queries]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, labels and keywords left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names: set[str] = set()
    # Not preceded by a digit: the unit of a duration (5m) or an exponent is no name.
    for match in re.finditer(r"(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group()
        if text[match.end() :].lstrip().startswith("(") or word.lower() in _PROMQL_KEYWORDS:
            continue  # a function or an aggregation, or a keyword
        names.add(word)
    return names


def test_metric_names_are_found_in_expressions() -> None:
    """The extractor the checks below rely on."""
    expr = (
        "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket"
        '{route!="/x"}[5m]))) > 2 and on (instance) up == 1 or vector(0) * database_free_bytes'
        " offset 5m"
    )
    assert metric_names(expr) == {
        "http_request_duration_seconds_bucket",
        "up",
        "database_free_bytes",
    }


def test_promtool_checks_the_alert_rules() -> None:
    result = subprocess.run(
        [tool("promtool"), "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_unit_tests_fire_every_alert() -> None:
    """alerts_test.yml makes each alert fire on a history that breaks it; promtool agrees."""
    result = subprocess.run(
        [tool("promtool"), "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == {rule["alert"] for rule in alert_rules()}


def test_the_alerts_the_design_names_are_there() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert names >= DESIGN_ALERTS
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Each panel query, as a recording rule, passes ``promtool check rules``."""
    queries = dashboard_queries()
    assert len(queries) >= 20
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"staterelay:dashboard:query_{n}", "expr": query}
                    for n, query in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    result = subprocess.run(
        [tool("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_panels_use_the_datasource_input_and_unique_ids() -> None:
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert document["__inputs"][0]["pluginId"] == "prometheus"
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids))
    for panel in document["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]


async def test_rules_and_dashboard_name_only_metrics_staterelay_exports(
    settings: Settings, aiohttp_client: Any
) -> None:
    """A real app (SQLite, Redis on) is scraped; every name the pack reads is in the scrape."""
    url = require_redis()
    prefix = unique_prefix()
    app = create_app(dataclasses.replace(settings, redis=RedisSettings(url=url, key_prefix=prefix)))
    try:
        client: TestClient[Any, Any] = await aiohttp_client(app)
        await client.get("/readyz")  # one observed request, so the histogram has a series
        text = await (await client.get("/metrics")).text()
    finally:
        await delete_prefixed(url, prefix)
    exported = {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }
    read = set().union(
        *(metric_names(rule["expr"]) for rule in alert_rules()),
        *(metric_names(query) for query in dashboard_queries()),
    )
    assert read - exported - PROMETHEUS_MADE == set()
    assert "redis_connected" in read
    assert "database_free_bytes" in read
