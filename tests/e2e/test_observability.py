"""Prometheus against the running system: department events go in through intake, Prometheus
scrapes all four services with the project's rules, and every dashboard query and every recording
rule returns data, every rule evaluates cleanly, and the alerts the data calls for are raised."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import department_key, post, progress_event
from tests.metrics.test_rules import GRAFANA_VARIABLES, dashboard_queries, rules
from tests.prometheus import firing_or_pending, query, running_prometheus, unhealthy_rules

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def department_event(department: str, type_: str, subject: str, data: dict, *, days_ago: float = 0) -> dict:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"/departments/{department}",
            "type": f"duban.{type_}.v1", "subject": subject, "time": (NOW - timedelta(days=days_ago)).isoformat(),
            "datacontenttype": "application/json", "data": data}


def refund_case(case_id: str, days: float) -> list[dict]:
    kind = {"case_type": "export_tax_refund"}
    return [department_event("tax-bureau", "case.opened", case_id, kind, days_ago=days),
            department_event("tax-bureau", "case.closed", case_id,
                             {**kind, "outcome": "completed", "handled_instantly": False, "trips": 0})]


def power_case(case_id: str, steps: int) -> list[dict]:
    kind = {"case_type": "power_connection_low_voltage"}
    return [department_event("power-supply-center", "case.opened", case_id, kind, days_ago=6),
            *(department_event("power-supply-center", "case.step-completed", case_id,
                               {**kind, "step": f"step_{n}"}, days_ago=5 - n) for n in range(steps)),
            department_event("power-supply-center", "case.closed", case_id,
                             {**kind, "outcome": "completed", "handled_instantly": False, "trips": 1})]


def tax_hours_report(value: float, unit: str) -> dict:
    return department_event("tax-bureau", "indicator.value-reported", "annual_tax_hours",
                            {"period": str(NOW.year), "value": value, "unit": unit})


@pytest.fixture(scope="module")
def fed_stack(stack):
    _launcher, urls, _run_dir, database_url = stack
    tax, power = department_key(database_url, "tax-bureau"), department_key(database_url, "power-supply-center")
    market = department_key(database_url, "market-regulation")
    batches = [
        (tax, [*refund_case("2026-TR-001", 3), *refund_case("2026-TR-002", 12),
               # still open after 120 days: the year's mean can no longer meet 7 working days
               department_event("tax-bureau", "case.opened", "2026-TR-003", {"case_type": "export_tax_refund"},
                                days_ago=120),
               tax_hours_report(96.0, "hours_per_year"),
               # a figure in the wrong unit passes intake's contract but the metrics service dead-letters it
               tax_hours_report(96.0, "count")]),
        (power, power_case("2026-PC-001", steps=4)),
        (market, [progress_event("T07", "market-regulation", 40)]),
    ]
    for key, events in batches:
        response = post(urls, key, events)
        assert response.status_code == 202, response.text
    return urls


@pytest.fixture(scope="module")
def prometheus(fed_stack, tmp_path_factory):
    jobs = {f"duban-{name}": [urlsplit(url).netloc] for name, url in fed_stack.items()}
    with running_prometheus(jobs, tmp_path_factory.mktemp("prometheus")) as url:
        yield url


def test_every_dashboard_and_rule_query_returns_data(prometheus):
    variables = GRAFANA_VARIABLES | {"$period": str(NOW.year), "$indicator": "power_connection_steps"}
    queries = dashboard_queries(variables) + [r["record"] for r in rules() if "record" in r]

    deadline = time.monotonic() + 90
    while (empty := [q for q in queries if not query(prometheus, q)]) and time.monotonic() < deadline:
        time.sleep(1)
    assert empty == []
    assert unhealthy_rules(prometheus) == []


def test_the_alerts_the_data_calls_for_are_raised(prometheus):
    wanted = {("IndicatorBreached", "power_connection_steps"), ("IndicatorBreached", "annual_tax_hours"),
              ("IndicatorForecastBreach", "export_tax_refund_days"), ("TaskRed", None),
              ("DeadLettersIncreasing", None)}
    deadline = time.monotonic() + 60
    while (missing := wanted - firing_or_pending(prometheus)) and time.monotonic() < deadline:
        time.sleep(1)
    assert missing == set()
