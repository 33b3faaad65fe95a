"""The board's arithmetic on plain data: the overview's grouping and counts, the scorecard and ranking,
the exported tables, paging."""

from __future__ import annotations

import json
from datetime import date

from duban.catalog import load_catalog
from services.board.domain import scorecard, tables, views
from tests.conftest import ROOT

CATALOG = load_catalog()
TODAY = date(2021, 9, 1)


def task(task_id: str, light: str = "green", **extra) -> dict:
    plan = CATALOG.task(task_id)
    return {"id": task_id, "area": plan.area, "title": plan.title, "lead": list(plan.lead),
            "responsible": list(plan.responsible), "status": "in_progress", "percent": 50, "light": light,
            "light_reason": "on_track", "next_due": "2021-12-31", "last_report_at": "2021-08-20T02:00:00+00:00",
            "last_note": "推进中", "milestones": [], **extra}


def occurrence(due: str, status: str, done_at: str | None = None) -> dict:
    return {"milestone_id": "x", "due": due, "original_due": due, "status": status, "done_at": done_at}


def test_overview_groups_by_area_in_plan_order_and_counts_what_it_shows():
    tasks = [task("T09", "red"), task("T01", "yellow"), task("T02", "red"), task("T28")]
    everything = views.overview(CATALOG, tasks, views.Filters())
    assert [g.id for g in everything.groups] == sorted({CATALOG.task(t["id"]).area for t in tasks})
    assert everything.counts == {"red": 2, "yellow": 1, "green": 1} and everything.total == 4
    assert everything.groups[0].tasks[0]["lead_names"] == ["区发改局", "区行政服务中心管委会"]
    red = views.overview(CATALOG, tasks, views.Filters(light="red"))
    assert [t["id"] for g in red.groups for t in g.tasks] == ["T02", "T09"]
    assert red.counts == {"red": 2, "yellow": 0, "green": 0}
    area = views.overview(CATALOG, tasks, views.Filters(area="A1", light="red"))
    assert [t["id"] for g in area.groups for t in g.tasks] == ["T02"]
    awaiting = views.overview(CATALOG, tasks, views.Filters(awaiting=True), awaiting={"T01", "T09", "T27"})
    assert [t["id"] for g in awaiting.groups for t in g.tasks] == ["T01", "T09"] and awaiting.awaiting == 2
    assert everything.awaiting == 0 and red.total == 2


def test_a_code_the_catalog_lacks_shows_as_itself():
    assert views.department_names(CATALOG, ["tax-bureau", "no-such-unit"]) == ["区税务局", "no-such-unit"]


def test_scorecard_counts_kept_dates_overdue_figures_and_answer_time():
    # T09 is the tax bureau's alone; its first milestone was done a day late (Beijing time), the second on time,
    # the third is overdue, the fourth not due yet.
    tasks = [task("T09", "red", milestones=[
        occurrence("2021-06-30", "done", "2021-06-30T17:00:00+00:00"),  # 07-01 01:00 in Beijing: late
        occurrence("2021-07-31", "done", "2021-07-30T02:00:00+00:00"),
        occurrence("2021-08-31", "overdue"),
        occurrence("2021-12-31", "open")])]
    figures = [{"department": "tax-bureau", "compliant": True}, {"department": "tax-bureau", "compliant": False},
               {"department": "tax-bureau", "compliant": None}, {"department": "district-court", "compliant": True}]
    escalations = [
        {"units": ["tax-bureau"], "opened_at": "2021-09-01T00:00:00+00:00", "acknowledged_at": "2021-09-01T03:00:00+00:00"},
        {"units": ["tax-bureau"], "opened_at": "2021-09-01T00:00:00+00:00", "acknowledged_at": "2021-09-01T05:00:00+00:00"},
        {"units": ["tax-bureau"], "opened_at": "2021-09-01T00:00:00+00:00", "acknowledged_at": None},
        {"units": ["district-court"], "opened_at": "2021-09-01T00:00:00+00:00", "acknowledged_at": None}]
    [card] = scorecard.scorecards(CATALOG, tasks, figures, escalations, TODAY)
    assert (card.code, card.name, card.tasks) == ("tax-bureau", "区税务局", 1)
    assert (card.milestones_due, card.on_time, card.overdue, card.red_tasks) == (3, 1, 1, 1)
    assert card.on_time_rate == 1 / 3
    assert (card.indicators_measured, card.indicators_met, card.indicators_rate) == (2, 1, 0.5)
    assert (card.escalations, card.answered, card.answer_hours) == (3, 2, 4.0)


def card(code: str, **counts) -> scorecard.Scorecard:
    base = dict(name=code, tasks=1, milestones_due=4, on_time=4, overdue=0, red_tasks=0, indicators_measured=0,
                indicators_met=0, escalations=0, answered=0, answer_hours=None)
    return scorecard.Scorecard(code=code, **{**base, **counts})


def test_ranking_orders_overdue_then_on_time_then_indicators_then_answer_time_and_ties_share_a_rank():
    cards = [card("late", on_time=2), card("overdue", overdue=1), card("perfect"), card("also-perfect"),
             card("missed-figure", indicators_measured=2, indicators_met=1),
             card("slow", escalations=1, answered=1, answer_hours=30.0),
             card("silent", escalations=2), card("quick", escalations=1, answered=1, answer_hours=2.0)]
    ranked = [(rank, c.code) for rank, c in scorecard.ranking(cards)]
    assert ranked == [(1, "also-perfect"), (1, "perfect"), (3, "quick"), (4, "slow"), (5, "silent"),
                      (6, "missed-figure"), (7, "late"), (8, "overdue")]


def test_ledger_and_indicator_tables_speak_chinese_in_the_plan_order():
    ledger = tables.ledger(CATALOG, [task("T09", "red"), task("T01")])
    assert [row[0] for row in ledger.rows] == ["T01", "T09"]
    first = dict(zip(ledger.header, ledger.rows[0]))
    assert first["牵头部门"] == "区发改局、区行政服务中心管委会" and first["亮灯"] == "绿" and first["状态"] == "推进中"
    assert first["最近报告时间"] == "2021-08-20 10:00"  # Beijing time
    answer = {"period": "2021-Q3", "items": [
        {"indicator": "export_tax_refund_days", "name": "正常出口退税业务平均办理时间", "task": "T09", "value": 6.5,
         "unit": "working_days", "comparison": "le", "target": 7, "target_max": None, "samples": 12, "open_cases": 3,
         "forecast": 7.4, "light": "yellow", "compliant": True},
        {"indicator": "x", "name": "区间", "task": "T01", "value": None, "unit": "ratio", "comparison": "between",
         "target": 0.2, "target_max": 0.4, "samples": 0, "open_cases": 0, "forecast": None, "light": None,
         "compliant": None}]}
    table = tables.indicator_table(answer)
    assert table.title == "指标完成情况（2021-Q3）"
    assert table.rows[0] == ("export_tax_refund_days", "正常出口退税业务平均办理时间", "T09", "2021-Q3", 6.5,
                             "working_days", "≤", 7, 12, 3, 7.4, "黄", "是")
    assert table.rows[1][4] == "" and table.rows[1][7] == "0.2–0.4" and table.rows[1][-2:] == ("未计量", "未计量")


def test_pager():
    pager = views.Pager(page=2, size=10, total=25)
    assert (pager.offset, pager.pages, pager.has_previous, pager.has_next) == (10, 3, True, True)
    assert views.Pager(page=1, size=10, total=0).pages == 1
    assert not views.Pager(page=3, size=10, total=25).has_next


def test_every_pause_reason_has_a_name():
    schema = json.loads((ROOT / "contracts/events/duban.case.paused.v1.json").read_text(encoding="utf-8"))
    assert set(views.PAUSE_REASONS) == set(schema["$defs"]["data"]["properties"]["reason"]["enum"])
