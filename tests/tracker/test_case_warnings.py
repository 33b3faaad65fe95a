"""Case warnings: an open case is announced at 50, 75 and 100 % of its allowed time, in its case
type's unit on the working-day calendar, paused time excluded, once per (case, threshold)."""

from __future__ import annotations

import json

import pytest

from duban.events import validate_event
from duban.events.models import CaseWarning
from duban.workcal import OfficeHours, OfficeSchedule
from services.tracker.domain.warnings import case_limits
from services.tracker.scheduled import CaseWarner
from tests.tracker.conftest import CALENDAR, CATALOG, at, case_event

pytestmark = pytest.mark.database

HOURS = OfficeHours(CALENDAR, OfficeSchedule.default())


def test_limits_are_the_plans_duration_targets_per_case_type():
    limits = case_limits(CATALOG)
    assert [(l.indicator, l.unit, l.allowed) for l in limits["export_tax_refund"]] == \
        [("export_tax_refund_days", "working_days", 7.0)]
    assert {l.unit for l in limits["company_startup"]} == {"working_hours", "working_days"}
    assert limits["simple_bankruptcy"][0].unit == "calendar_days"
    assert "service_item" not in limits  # measured as ratios only: no time limit per case


async def test_each_threshold_is_announced_once_on_working_days_with_pauses_excluded(tracker, pool):
    warner = CaseWarner(CATALOG, HOURS)
    # An export tax refund, 7 working days allowed, received on Friday 2021-09-24.
    await tracker.send(case_event("opened", "TSR-1", "2021-09-24 10:00", {"title": "出口退（免）税申报"}))

    async def check(when: str) -> list[dict]:
        await warner.check(pool, at(when))
        return await tracker.outbox(CaseWarning.TYPE)

    # 26, 27 September (the 26th a worked Sunday before National Day): 2 of 7 working days, under 50 %.
    assert await check("2021-09-27 12:00") == []
    # 28, 29: 4 of 7 = 57 %: the 50 % warning.
    [half] = await check("2021-09-29 12:00")
    assert half["subject"] == "TSR-1" and half["data"]["threshold"] == 50
    assert (half["data"]["elapsed"], half["data"]["allowed"], half["data"]["unit"]) == (4.0, 7.0, "working_days")
    assert half["data"]["title"] == "出口退（免）税申报" and half["data"]["paused"] is False
    # Checked again the same day, or by another replica: nothing new.
    assert len(await check("2021-09-29 16:00")) == 1
    # A pause for supplementary documents across 30 September and the holiday stops the clock.
    await tracker.send(case_event("paused", "TSR-1", "2021-09-29 17:00", {"reason": "supplement"}))
    assert len(await check("2021-10-08 09:00")) == 1
    await tracker.send(case_event("resumed", "TSR-1", "2021-10-08 09:00", {"reason": "supplement"}))
    # 9 October (worked Saturday) and 11 October: 6 of 7 working days = 86 %: the 75 % warning.
    warnings = await check("2021-10-11 10:00")
    assert [w["data"]["threshold"] for w in warnings] == [50, 75]
    # 12 October: 7 of 7, the limit.
    warnings = await check("2021-10-12 10:00")
    assert [w["data"]["threshold"] for w in warnings] == [50, 75, 100]
    assert len(await check("2021-10-20 10:00")) == 3
    # As the relay will publish them: each holds to the published contract.
    for row in await pool.fetch("SELECT event_id, type, subject, event_time, data FROM outbox WHERE type = $1",
                                CaseWarning.TYPE):
        event = {"specversion": "1.0", "id": str(row["event_id"]), "source": "/services/tracker", "type": row["type"],
                 "subject": row["subject"], "time": row["event_time"].isoformat(), "data": json.loads(row["data"])}
        assert validate_event(event) == []


async def test_a_late_check_announces_only_the_highest_threshold_passed(tracker, pool):
    # A company start-up has 5 working hours: opened Monday 09:00, checked the next day.
    await tracker.send(case_event("opened", "QY-7", "2021-09-27 09:00", {}, department="market-regulation",
                                  case_type="company_startup"))
    await CaseWarner(CATALOG, HOURS).check(pool, at("2021-09-28 09:00"))
    [limit] = await tracker.outbox(CaseWarning.TYPE)
    assert (limit["data"]["threshold"], limit["data"]["indicator"]) == (100, "company_startup_hours")
    marked = await pool.fetch("SELECT threshold, announced FROM case_warnings WHERE case_id = 'QY-7' ORDER BY threshold")
    assert [(r["threshold"], r["announced"]) for r in marked] == [(50, False), (75, False), (100, True)]


async def test_closed_and_cancelled_cases_are_not_warned(tracker, pool):
    await tracker.send(
        case_event("opened", "TSR-2", "2021-09-01 10:00", {}),
        case_event("closed", "TSR-2", "2021-09-03 10:00", {"outcome": "completed", "handled_instantly": False, "trips": 0}),
        case_event("opened", "TSR-3", "2021-09-01 10:00", {}),
        case_event("cancelled", "TSR-3", "2021-09-02 10:00", {"reason": "withdrawn"}))
    assert await CaseWarner(CATALOG, HOURS).check(pool, at("2021-12-01 10:00")) == 0
