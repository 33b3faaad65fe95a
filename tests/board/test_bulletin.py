"""The 督查通报's arithmetic on plain data: the week, its as-of instant, what was overdue then and for how
many days, the extensions granted that week, the summary, and the sections both renderings share."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from duban.catalog import load_catalog
from services.board.domain import bulletin
from tests.board.test_domain import occurrence, task

CATALOG = load_catalog()
NOW = datetime(2026, 11, 26, 4, 0, tzinfo=timezone.utc)
INDICATORS = {"period": "2021", "items": [
    {"indicator": "export_tax_refund_days", "name": "正常出口退税业务平均办理时间", "task": "T09", "value": 7.5,
     "unit": "working_days", "comparison": "le", "target": 7, "target_max": None, "forecast": 7.8, "light": "red",
     "compliant": False, "departments": [{"department": "tax-bureau", "compliant": False}]},
    {"indicator": "x", "name": "即办件比例", "task": "T14", "value": None, "unit": "ratio", "comparison": "ge",
     "target": 0.5, "target_max": None, "forecast": None, "light": None, "compliant": None, "departments": []}]}


def test_an_iso_week_and_its_as_of_instant():
    assert bulletin.week_days("2021-W38") == (date(2021, 9, 20), date(2021, 9, 26))
    assert bulletin.week_days("2020-W53") == (date(2020, 12, 28), date(2021, 1, 3))
    assert bulletin.week_of(date(2021, 1, 3)) == "2020-W53"
    for bad in ("2021-W54", "2021-38", "2021-W00"):
        with pytest.raises(bulletin.BadWeek):
            bulletin.week_days(bad)
    # A past week ends on Monday 00:00 Beijing; the running week is reported as of now.
    assert bulletin.as_of_for("2021-W38", NOW) == datetime(2021, 9, 26, 16, 0, tzinfo=timezone.utc)
    assert bulletin.as_of_for("2026-W48", NOW) == NOW


def test_overdue_is_judged_by_dates_as_of_the_week_and_a_retroactive_one_by_its_grace():
    as_of = datetime(2021, 9, 26, 16, 0, tzinfo=timezone.utc)  # Monday 2021-09-27 00:00 Beijing
    assert bulletin.overdue_at(occurrence("2021-09-26", "overdue"), as_of)
    assert not bulletin.overdue_at(occurrence("2021-09-27", "overdue"), as_of)  # overdue today, not then
    assert not bulletin.overdue_at(occurrence("2021-06-30", "done", "2021-09-20T02:00:00+00:00"), as_of)
    assert bulletin.overdue_at(occurrence("2021-06-30", "done", "2021-10-08T02:00:00+00:00"), as_of)  # done later
    retroactive = {**occurrence("2021-03-31", "open"), "retroactive": True, "grace_until": "2021-10-15"}
    assert not bulletin.overdue_at(retroactive, as_of) and bulletin.deadline_of(retroactive) == date(2021, 10, 15)


def test_the_week_s_bulletin():
    tasks = [task("T09", "red", next_due="2021-06-30", milestones=[
                 {**occurrence("2021-06-30", "overdue"), "milestone_id": "T09-M1"}]),
             task("T07", "red", next_due="2021-09-30", milestones=[
                 {**occurrence("2021-09-30", "open"), "milestone_id": "T07-M1"}]),
             task("T01", "green", status="done")]
    approved = [
        {"task_id": "T07", "milestone_id": "T07-M2", "original_due": "2021-12-31", "requested_due": "2022-03-31",
         "reason": "系统对接延后", "decided_by": "督查室 李科长", "status": "approved",
         "decided_at": "2021-09-22T02:00:00+00:00"},
        {"task_id": "T07", "milestone_id": "T07-M1", "original_due": "2021-06-30", "requested_due": "2021-10-29",
         "reason": "早前批准", "decided_by": "督查室", "status": "approved", "decided_at": "2021-09-10T02:00:00+00:00"}]
    made = bulletin.assemble(CATALOG, week="2021-W38", now=NOW, tasks=tasks, indicators=INDICATORS, escalations=[],
                             extensions=approved)
    assert made.title == "鼓楼区优化营商环境工作督查通报（2021年第38周）"
    # As of Monday 2021-09-27: T09's deadline passed 89 days before; T07's is still ahead, so it is not listed.
    assert [(i.item, i.days_overdue) for i in made.red_tasks] == [("T09", 89)]
    assert [(i.item, i.leads, i.days_overdue) for i in made.overdue_milestones] == [("T09-M1", "区税务局", 89)]
    assert [(e.milestone_id, e.new_due) for e in made.extensions] == [("T07-M2", "2022-03-31")]  # decided that week
    assert made.summary[0].startswith("截至2021年09月27日 00:00，鼓政办〔2021〕18号确定的3项任务中，红灯2项、黄灯0项、绿灯1项；")
    assert "本周（09月20日至09月26日）批准延期1项" in made.summary[1]
    assert made.summary[2] == "2项指标中（2021年度），达标0项、未达标1项、尚无计量1项。"
    parts = {s.heading: s for s in bulletin.sections(made)}
    assert list(parts) == ["一、总体情况", "二、部门排名", "三、红灯及逾期事项", "四、指标完成情况", "五、本周批准延期"]
    assert parts["四、指标完成情况"].rows[0] == ("正常出口退税业务平均办理时间", "T09", "7.5个工作日", "≤7个工作日", "7.8", "红")
    assert parts["四、指标完成情况"].rows[1][2:4] == ("—", "≥0.5（比例）")
    ranked = {row[1]: row for row in parts["二、部门排名"].rows}
    assert ranked["区税务局"][3] == "1" and ranked["区税务局"][5] == "0/1"
    assert parts["三、红灯及逾期事项"].rows[0] == ("T09 " + CATALOG.task("T09").title, "任务", "区税务局", "2021-06-30", "89")
