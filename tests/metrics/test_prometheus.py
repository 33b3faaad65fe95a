"""A real Prometheus scrapes the real metrics service, fed through the broker, and every dashboard
and rule query gets data (the queries on other services' metrics are evaluated, and get data in the
full-stack test)."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from duban.auth import ensure_local_keys
from duban.broker import ensure_topics, make_producer
from duban.events.kafka import to_kafka
from duban.pg import migrate
from duban.workcal import WorkingCalendar
from tests.metrics.conftest import MIGRATIONS
from tests.metrics.test_rules import GRAFANA_VARIABLES, dashboard_queries, rules
from tests.processes import ServiceProcess
from tests.prometheus import alert_states, firing_or_pending, query, running_prometheus, unhealthy_rules, wait_for

pytestmark = pytest.mark.database

# Metrics other services expose: their queries must evaluate here, and get data in the full stack.
OTHER_SERVICES = ("duban_intake_events_accepted_total", "duban_outbox_backlog", "duban_notifier_escalations_open",
                  "duban_board_bulletins_waiting", "duban_board_service_token_expiry_timestamp_seconds")
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def tracker_event(type_: str, subject: str, data: dict) -> dict:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/services/tracker", "type": type_,
            "subject": subject, "time": NOW.isoformat(), "datacontenttype": "application/json", "data": data}


def closed(case_id: str, case_type: str, department: str, days: float, *, steps: int = 3) -> dict:
    return tracker_event("duban.tracker.case.closed.v1", case_id, {
        "department": department, "case_type": case_type, "outcome": "completed",
        "opened_at": (NOW - timedelta(days=days)).isoformat(), "closed_at": NOW.isoformat(),
        "handled_instantly": False, "trips": 0, "steps": steps, "paused_intervals": []})


def feed_events() -> tuple[list[dict], list[dict]]:
    changes = [
        tracker_event("duban.tracker.task.updated.v1", "T09", {"status": "in_progress", "percent": 40, "light": "red",
                                                               "reported_at": NOW.isoformat()}),
        closed("PX1", "export_tax_refund", "tax-bureau", 3),
        closed("PX2", "power_connection_low_voltage", "power-supply-center", 5, steps=4),  # > 3 steps: breach
        tracker_event("duban.tracker.case.opened.v1", "PX3", {
            "department": "tax-bureau", "case_type": "export_tax_refund",
            "opened_at": (NOW - timedelta(days=120)).isoformat()}),  # makes the refund breach certain
        # Closed before it opened: dead-lettered by the metrics service.
        closed("PX4", "export_tax_refund", "tax-bureau", -2),
    ]
    reports = [{"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/departments/tax-bureau",
                "type": "duban.indicator.value-reported.v1", "subject": "annual_tax_hours", "time": NOW.isoformat(),
                "datacontenttype": "application/json",
                "data": {"period": str(NOW.year), "value": 96.0, "unit": "hours_per_year"}}]
    return changes, reports


@pytest.fixture
async def metrics_service(database_url, kafka_bootstrap, unique_topics, tmp_path):
    schema, tag = f"metrics_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    await migrate(database_url, schema, MIGRATIONS)
    settings = unique_topics.model_copy(update={"kafka_bootstrap": kafka_bootstrap})
    await ensure_topics(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")} | {
        "DUBAN_DATABASE_URL": database_url, "DUBAN_KAFKA_BOOTSTRAP": kafka_bootstrap, "DUBAN_SCHEMA_NAME": schema,
        "DUBAN_TOPIC_DEPT_EVENTS": settings.topic_dept_events,
        "DUBAN_TOPIC_TRACKER_CHANGES": settings.topic_tracker_changes,
        "DUBAN_CONSUMER_GROUP": f"metrics-{tag}", "DUBAN_REPORTS_CONSUMER_GROUP": f"metrics-reports-{tag}",
        "DUBAN_LAG_POLL_INTERVAL_S": "1", "DUBAN_DATA_DIR": str(tmp_path),
        "DUBAN_KAFKA_REBALANCE_TIMEOUT_S": "4", "DUBAN_KAFKA_SESSION_TIMEOUT_S": "10",
        "DUBAN_AUTH_PUBLIC_KEY_FILE": str(ensure_local_keys(tmp_path)[1]),
    }
    service = ServiceProcess(env, tmp_path / "metrics.log", module="services.metrics").start()
    url = service.url
    producer = make_producer(settings)
    await producer.start()
    changes, reports = feed_events()
    for topic, events in ((settings.topic_tracker_changes, changes), (settings.topic_dept_events, reports)):
        for event in events:
            key, value, headers = to_kafka(event)
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    await producer.stop()
    try:
        await asyncio.to_thread(wait_for, "the metrics service to apply the feed", lambda: all(
            needle in httpx.get(url + "/metrics").text for needle in (
                'duban_indicator_value{department="all",indicator="annual_tax_hours"',
                'duban_indicator_value{department="all",indicator="power_connection_steps"',
                'duban_dead_letters_total{', 'duban_consumer_lag{', 'duban_department_tasks{department="tax-bureau"')),
            90)
        yield service.port
    finally:
        service.stop()


@pytest.fixture
def prometheus(metrics_service, tmp_path):
    with running_prometheus({"duban-metrics": [f"127.0.0.1:{metrics_service}"]}, tmp_path) as url:
        yield url


def test_every_dashboard_and_rule_query_gets_data(prometheus):
    variables = GRAFANA_VARIABLES | {"$period": str(NOW.year), "$indicator": "power_connection_steps"}
    ours = [q for q in dashboard_queries(variables) if not any(name in q for name in OTHER_SERVICES)]
    ours += [r["record"] for r in rules() if "record" in r
             and not any(name in r["expr"] for name in OTHER_SERVICES)]
    wait_for("a few scrapes and rule evaluations", lambda: query(prometheus, "count_over_time(up[1m]) >= 5")
             and query(prometheus, 'ALERTS{alertname="TaskRed"}'))
    empty = [q for q in ours if not query(prometheus, q)]
    assert empty == [], empty
    for q in dashboard_queries(variables):
        query(prometheus, q)  # evaluates, whichever service's metric it reads

    assert unhealthy_rules(prometheus) == []
    alerts = firing_or_pending(prometheus)
    assert {("IndicatorBreached", "power_connection_steps"), ("IndicatorBreached", "annual_tax_hours"),
            ("IndicatorForecastBreach", "export_tax_refund_days"), ("TaskRed", None)} <= alerts
    # In any month: the exporter tells whether next year is covered, and the alert follows that and the
    # quarter. Its `for: 1h` outlasts this test, so here it can only be pending; promtool
    # (rules_calendar_test.yml) shows it firing in October and quiet in January.
    covered = WorkingCalendar().is_covered(NOW.year + 1)
    assert [s["value"][1] for s in query(prometheus, "duban_calendar_covers_next_year")] == [str(int(covered))]
    expected = None if covered or NOW.month < 10 else "pending"
    assert alert_states(prometheus).get(("CalendarNextYearMissing", None)) == expected
