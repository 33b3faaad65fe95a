"""Sane time: every instant of an event, nested ones included, lies between the floor and the clock plus its skew."""

from __future__ import annotations

import copy
from datetime import date, datetime, timedelta, timezone

from duban.events import CONTRACTS
from duban.events.timing import TimeWindow

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
WINDOW = TimeWindow(floor=date(2000, 1, 1), max_skew=timedelta(minutes=5), clock=lambda: NOW)


def example(type_: str) -> dict:
    return copy.deepcopy(CONTRACTS[type_].schema["examples"][0])


def test_every_contract_example_is_within_the_window():
    assert [(t, e["id"]) for t, c in CONTRACTS.items() for e in c.schema["examples"] if WINDOW.errors(e)] == []


def test_instants_nested_in_data_are_checked_at_their_pointers():
    event = example("duban.tracker.case.closed.v1")
    event["data"]["paused_intervals"] = [{"from": "2021-08-02T01:00:00Z", "to": "9999-01-01T00:00:00Z",
                                          "reason": "supplement"}]
    event["data"]["opened_at"] = "1900-01-01T00:00:00+08:00"
    assert [e.path for e in WINDOW.errors(event)] == ["/data/opened_at", "/data/paused_intervals/0/to"]


def test_the_edges_of_the_window():
    event = example("duban.task.progress-reported.v1")
    for time, refused in [("2000-01-01T00:00:00Z", False), ("2000-01-01T07:59:59+08:00", True),
                          ("2026-12-01T12:05:00Z", False), ("2026-12-01T20:05:01+08:00", True)]:
        assert bool(WINDOW.errors({**event, "time": time})) == refused, time


def test_an_indicator_period_in_a_year_outside_the_window_is_refused():
    event = example("duban.indicator.value-reported.v1")
    for period, refused in [("2021-Q1", False), ("2026-12", False), ("2027", True), ("1999-Q4", True)]:
        event["data"]["period"] = period
        assert [e.path for e in WINDOW.errors(event)] == (["/data/period"] if refused else []), period
