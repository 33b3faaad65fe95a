"""Prometheus rules and Grafana dashboards: promtool unit tests, every query parses and names metrics the code
exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from tests.conftest import ROOT
from tests.docs.test_docs import metric_names
from tests.prometheus import RULE_FILES

PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
HERE = Path(__file__).parent
# Values for Grafana's variables, so that a dashboard query is checked as Prometheus will get it.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$period": "2021", "$indicator": "export_tax_refund_days",
                     "$case_type": "export_tax_refund", "$department": "tax-bureau"}


def promtool(*args: str, cwd: Path = ROOT) -> str:
    run = subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def rules() -> list[dict]:
    return [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"]]


def dashboard_queries(variables: dict[str, str] = GRAFANA_VARIABLES) -> list[str]:
    queries = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for name, value in variables.items():
                    expr = expr.replace(name, value)
                assert "$" not in expr, f"{path.name}: unresolved variable in {expr!r}"
                queries.append(expr)
    return queries


def test_config_and_rules_are_valid():
    promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))


def test_rule_unit_tests():
    promtool("test", "rules", "rules_test.yml", "rules_calendar_test.yml", cwd=HERE)


def test_every_alert_is_documented():
    alerts = [rule for rule in rules() if "alert" in rule]
    assert {"IndicatorBreached", "IndicatorForecastBreach", "TaskRed", "DeadLettersIncreasing", "ConsumerLagHigh",
            "CalendarNextYearMissing", "ServiceDown"} <= {a["alert"] for a in alerts}
    for alert in alerts:
        assert alert.get("for"), alert["alert"]
        assert alert["labels"]["severity"] in ("warning", "critical"), alert["alert"]
        assert alert["annotations"]["summary"], alert["alert"]
        runbook = alert["annotations"]["runbook_url"]
        kebab = re.sub(r"(?<!^)(?=[A-Z])", "-", alert["alert"]).lower()
        assert runbook == f"docs/runbooks/{kebab}.md", alert["alert"]
        text = (ROOT / runbook).read_text()
        for section in ("## What it means", "## How to check", "## What to do"):
            assert section in text, (runbook, section)


def test_every_query_parses(tmp_path):
    exprs = [rule["expr"] for rule in rules()] + dashboard_queries()
    check = {"groups": [{"name": "parse", "rules": [{"record": f"check:query_{i}", "expr": e}
                                                    for i, e in enumerate(exprs)]}]}
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(check))
    assert f"SUCCESS: {len(exprs)} rules found" in promtool("check", "rules", str(path))


def test_every_query_names_metrics_the_code_exports():
    """A renamed or misspelt metric leaves a panel empty and an alert silent without any error."""
    exported = metric_names()
    named = {name for expr in [rule["expr"] for rule in rules()] + dashboard_queries()
             for name in re.findall(r"\b(duban_[a-z0-9_]*[a-z0-9])\b", expr)}
    assert {"duban_board_service_token_expiry_timestamp_seconds", "duban_notifier_escalations_open"} <= named
    assert sorted(name for name in named if not any(m.match(name) for m in exported)) == []


def test_dashboards_choose_their_data_source():
    assert {p.stem for p in DASHBOARDS} == {"overview", "indicators", "departments", "pipeline"}
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource", path.name
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}", (path.name, panel["title"])
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), path.name
