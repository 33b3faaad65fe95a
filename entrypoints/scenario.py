"""The demo's plan year as data: what the departments and the district office do, and on which plan date.

`duban run` plays it on a virtual clock (duban/clock.py) from the plan's issue, 2021-05-11, at one
plan-month per real minute, so a newcomer watches the year happen in minutes:

- every task reports progress monthly from its catalog deadlines, only ever forward, and most finish
  before their deadline (lights stay green, turn yellow as the deadline nears, then show done); two
  finish late and go red first;
- a few scripted stories: T02's milestone due before the plan was issued is reported late (red in
  the first minute, then green); T07's 6月底 milestone goes yellow, red, gets an extension approved and
  is done; T19 asks for an extension that is rejected, goes red at the turn of the year and is done
  in January; T16 is done early;
- the district office verifies each done report and milestone completion a few working days after it
  (办结销号); T16's done report is returned for missing evidence, reported done again and then verified;
- cases for every case-fed indicator, with durations near their targets (so Grafana and /v1/indicators
  show values around them), including pauses and steps; the tax bureau, justice, education and the
  development and reform bureau report their indicator values.

Everything derives from the catalog and a seeded random generator: the same seed plays the same year.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from duban.catalog import Catalog, load_catalog
from duban.workcal import SHANGHAI, WorkingCalendar

START = datetime(2021, 5, 11, 8, 0, tzinfo=SHANGHAI)  # the plan's issue, at the opening of the office day
SPEED = 43200.0  # a plan-month (30 days) per real minute
# The scripted year ends here; the clock runs on, and what is still open ages into yellow and red.
HORIZON = date(2022, 1, 31)
HORIZON_END = datetime.combine(HORIZON, time.max, SHANGHAI)
SEED = 2021


# -- actions ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """A department system posts a CloudEvent to intake, timed at the step's plan instant."""

    department: str
    type: str
    subject: str
    data: dict


@dataclass(frozen=True)
class AskExtension:
    """延期申请: the task's lead department asks the tracker to move a milestone."""

    department: str
    task: str
    milestone: str
    new_due: date
    reason: str


@dataclass(frozen=True)
class DecideExtension:
    """The district office decides the request of an earlier AskExtension for the same milestone."""

    task: str
    milestone: str
    approve: bool
    reason: str


@dataclass(frozen=True)
class Verify:
    """办结销号: the district office judges what awaits verification, the task's done report (milestone
    None) or the milestone's completion: verified, or returned with a reason."""

    task: str
    milestone: str | None
    verified: bool
    reason: str | None = None


Action = Report | AskExtension | DecideExtension | Verify


@dataclass(frozen=True, order=True)
class Step:
    at: datetime
    action: Action = field(compare=False)


def progress(department: str, task: str, percent: int, note: str) -> Report:
    status = "done" if percent == 100 else "in_progress"
    return Report(department, "duban.task.progress-reported.v1", task, {"status": status, "percent": percent, "note": note})


def milestone_done(department: str, task: str, milestone: str, note: str) -> Report:
    return Report(department, "duban.task.milestone-completed.v1", task, {"milestone_id": milestone, "note": note})


def value_reported(department: str, indicator: str, period: str, value: float, unit: str, note: str) -> Report:
    return Report(department, "duban.indicator.value-reported.v1", indicator,
                  {"period": period, "value": value, "unit": unit, "note": note})


def on(text: str) -> datetime:
    """A plan instant written as Asia/Shanghai civil time, "2021-07-05 09:00"."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


# -- the scripted stories ------------------------------------------------------------------------------

SCRIPTED_TASKS = {"T07", "T16", "T19"}  # their whole year is written below
SCRIPTED_MILESTONES = {"T02-M1"}  # the rest of T02 follows the routine


def stories() -> list[Step]:
    return [
        # T02-M1 fell due on 2021-03-31, before the plan: it has ten working days' grace, runs out of
        # them (red, 催办 by mail) and is reported done in June (green again).
        Step(on("2021-06-03 10:00"), milestone_done("construction", "T02", "T02-M1", "施工图审查改革方案已印发实施")),

        # T07-M1, 企业开办时间压缩至5个工作日内 by 30 June: yellow from mid-June, red on 1 July (L1 提醒,
        # L2 催办, then L3 督办 after five working days), an extension to 30 July approved, done on 23 July.
        Step(on("2021-05-20 09:30"), progress("market-regulation", "T07", 20, "企业开办“一表填报”系统需求已确定")),
        Step(on("2021-06-10 09:30"), progress("market-regulation", "T07", 45, "一表填报系统开发中，公章刻制尚未对接")),
        Step(on("2021-06-28 16:00"), progress("market-regulation", "T07", 60, "公章刻制系统对接受阻，正在协调")),
        Step(on("2021-07-05 09:00"), AskExtension("market-regulation", "T07", "T07-M1", date(2021, 7, 30),
                                                  "公章刻制企业系统改造延后，需延期至7月底")),
        Step(on("2021-07-12 15:00"), DecideExtension("T07", "T07-M1", True, "经审核同意延期至2021年7月30日")),
        Step(on("2021-07-23 11:00"), milestone_done("market-regulation", "T07", "T07-M1", "企业开办压缩至3个工作日内，已全流程上线")),
        Step(on("2021-07-23 11:00"), progress("market-regulation", "T07", 70, "企业开办时间压缩目标已实现")),
        Step(on("2021-09-15 10:00"), progress("market-regulation", "T07", 85, "“证照分离”改革已覆盖大部分事项")),
        Step(on("2021-11-30 17:00"), milestone_done("market-regulation", "T07", "T07-M2", "“证照分离”改革全覆盖")),
        Step(on("2021-11-30 17:00"), progress("market-regulation", "T07", 100, "全部任务已完成")),

        # T16 is done in September, long before its deadline: it never leaves green.
        Step(on("2021-06-15 10:00"), progress("admin-service-center", "T16", 40, "综合窗口改革已启动")),
        Step(on("2021-08-16 10:00"), progress("admin-service-center", "T16", 80, "综合窗口已覆盖主要事项")),
        Step(on("2021-09-28 16:00"), milestone_done("admin-service-center", "T16", "T16-M1", "已全部完成")),
        Step(on("2021-09-28 16:00"), progress("admin-service-center", "T16", 100, "任务已完成，申请销号")),
        # … and the district office returns it (复核退回): the department sends its evidence and reports done again.
        Step(on("2021-10-08 15:00"), Verify("T16", None, False, "缺少综合窗口运行台账等佐证材料，请补充后重新申请销号")),
        Step(on("2021-10-20 10:00"), progress("admin-service-center", "T16", 100, "已补充综合窗口运行台账，申请销号")),

        # T19 asks to move its year-end deadline; the district office refuses; red on 1 January, done mid-January.
        Step(on("2021-07-20 10:00"), progress("market-regulation", "T19", 20, "信用监管平台招标中")),
        Step(on("2021-10-20 10:00"), progress("market-regulation", "T19", 45, "平台建设进度滞后")),
        Step(on("2021-12-10 09:00"), AskExtension("market-regulation", "T19", "T19-M1", date(2022, 3, 31),
                                                  "平台供应商交付延期")),
        Step(on("2021-12-14 15:00"), DecideExtension("T19", "T19-M1", False, "年度任务不予延期，请倒排工期按期完成")),
        Step(on("2021-12-28 10:00"), progress("market-regulation", "T19", 80, "平台已部署，正在试运行")),
        Step(on("2022-01-14 16:00"), milestone_done("market-regulation", "T19", "T19-M1", "平台已正式上线")),
        Step(on("2022-01-14 16:00"), progress("market-regulation", "T19", 100, "任务已完成")),

        # Reported indicators: values near their targets, the year's figure revised as the year goes on.
        Step(on("2021-07-08 10:00"), value_reported("tax-bureau", "annual_tax_hours", "2021", 96.0, "hours_per_year", "上半年测算")),
        Step(on("2021-10-11 10:00"), value_reported("tax-bureau", "annual_tax_hours", "2021", 91.5, "hours_per_year", "前三季度测算")),
        Step(on("2022-01-10 10:00"), value_reported("tax-bureau", "annual_tax_hours", "2021", 86.0, "hours_per_year", "全年测算")),
        Step(on("2021-12-20 10:00"), value_reported("justice", "policy_review_ratio", "2021", 0.24, "ratio", "抽查政策文件24%")),
        Step(on("2021-12-24 10:00"), value_reported("education", "new_school_places", "2021", 1180.0, "count", "新增学位")),
        Step(on("2021-12-24 10:00"), value_reported("education", "school_floor_area", "2021", 31250.0, "area_m2", "校舍面积")),
        Step(on("2021-09-30 10:00"), value_reported("dev-reform", "new_high_tech_enterprises", "2021", 61.0, "count", "前三季度")),
        Step(on("2022-01-12 10:00"), value_reported("dev-reform", "new_high_tech_enterprises", "2021", 104.0, "count", "全年")),
    ]


# -- the routine: every other task reports monthly towards its deadlines --------------------------------

NOTES = ("已制定实施方案", "已召开专题协调会", "正在推进落实", "系统已上线试运行", "已完成阶段目标")


def routine(catalog: Catalog, calendar: WorkingCalendar, rng: random.Random) -> list[Step]:
    """Monthly progress, only forward, to a finish shortly before the task's last deadline; `late`
    tasks (two, by the seed) finish a few weeks after it and go red first."""
    tasks = [t for t in catalog.tasks if t.id not in SCRIPTED_TASKS]
    late = set(rng.sample([t.id for t in tasks if max(m.due for m in t.milestones) == date(2021, 12, 31)], 2))
    steps = []
    for task in tasks:
        department = task.lead[0]
        deadline = max(m.due for m in task.milestones)
        finish = deadline + timedelta(days=rng.randint(8, 20)) if task.id in late \
            else deadline - timedelta(days=rng.randint(3, 80))
        finish = working_day_on_or_after(calendar, finish)
        months = [working_day_on_or_after(calendar, date(y, m, rng.randint(18, 26)))
                  for y, m in _months(START.date(), min(finish, HORIZON))]
        months = [d for d in months if START.date() < d < finish]
        for n, day in enumerate(months, start=1):
            percent = 10 * round(9 * n / (len(months) + 1))  # 10 … 90, never backwards, as the work advances
            steps.append(Step(_office(day, 10, 0), progress(department, task.id, max(percent, 10), rng.choice(NOTES))))
        if finish <= HORIZON:
            done_at = _office(finish, 16, 0)
            steps += [Step(done_at, milestone_done(department, task.id, m.id, "已按要求完成"))
                      for m in task.milestones if m.id not in SCRIPTED_MILESTONES]
            steps.append(Step(done_at, progress(department, task.id, 100, "任务已完成，申请销号")))
    return steps


def _months(first: date, last: date) -> Iterator[tuple[int, int]]:
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        yield year, month
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def working_day_on_or_after(calendar: WorkingCalendar, day: date) -> date:
    while not calendar.is_workday(day):
        day += timedelta(days=1)
    return day


def _office(day: date, hour: int, minute: int) -> datetime:
    return datetime.combine(day, time(hour, minute), SHANGHAI)


# -- 办结销号: the district office verifies what was reported done -------------------------------------

VERIFY_AFTER_WORKING_DAYS = 3  # within the tracker's grace (decision 020), so nothing verified on time goes red


def judged(action: Action) -> tuple[str, str | None] | None:
    """The (task, milestone) a step asks to verify (a done report: milestone None), or None."""
    if isinstance(action, Report) and action.type == "duban.task.milestone-completed.v1":
        return action.subject, action.data["milestone_id"]
    if isinstance(action, Report) and action.type == "duban.task.progress-reported.v1" and action.data["status"] == "done":
        return action.subject, None
    return None


def verifications(steps: list[Step], calendar: WorkingCalendar) -> list[Step]:
    """A verification a few working days after each "done" that no scripted decision judges (one for
    the same item after it and before the item's next "done")."""
    dones = sorted(((s.at, item) for s in steps if (item := judged(s.action)) is not None), key=lambda d: d[0])
    scripted = [(s.at, (s.action.task, s.action.milestone)) for s in steps if isinstance(s.action, Verify)]
    verified = []
    for n, (at, item) in enumerate(dones):
        until = next((later for later, other in dones[n + 1:] if other == item), HORIZON_END)
        if not any(other == item and at < when < until for when, other in scripted):
            day = calendar.add_working_days(at.date(), VERIFY_AFTER_WORKING_DAYS)
            verified.append(Step(_office(day, 15, 0), Verify(*item, verified=True)))
    return verified


# -- cases: each case type's stream, with durations near the indicator's target -------------------------


@dataclass
class Cases:
    calendar: WorkingCalendar
    rng: random.Random
    steps: list[Step] = field(default_factory=list)

    def case(self, department: str, case_type: str, case_id: str, opened: datetime, closed: datetime, *,
             steps: tuple[str, ...] = (), pause: tuple[str, datetime, datetime] | None = None,
             instantly: bool = False, trips: int = 0, **opened_data: str) -> None:
        """One case's events: opened, its steps spread over its life, a pause, closed."""
        def report(event: str, at: datetime, **data) -> None:
            self.steps.append(Step(at, Report(department, f"duban.case.{event}.v1", case_id, {"case_type": case_type, **data})))

        report("opened", opened, **opened_data)
        for n, step in enumerate(steps, start=1):
            report("step-completed", self.between(opened, closed, n / (len(steps) + 1)), step=step)
        if pause:
            reason, paused, resumed = pause
            report("paused", paused, reason=reason)
            report("resumed", resumed, reason=reason)
        report("closed", closed, outcome="completed", handled_instantly=instantly, trips=trips)

    def between(self, opened: datetime, closed: datetime, share: float) -> datetime:
        """An office-hours instant `share` of the way through a case: on the working day that far along,
        or, for a case of one day, that far through it."""
        if opened.date() == closed.date():
            return opened + (closed - opened) * share
        span = self.calendar.working_days_between(opened.date(), closed.date())
        day = self.working_days_after(opened.date(), round(span * share))
        return min(max(_office(day, 10, 30), opened), closed)

    def working_days_after(self, day: date, n: int) -> date:
        return self.calendar.add_working_days(day, n)

    def days(self, first: date = date(2021, 5, 12)) -> Iterator[date]:
        """The working days new cases are opened on: from the day after the plan's issue to the horizon."""
        day = first
        while day <= HORIZON:
            if self.calendar.is_workday(day):
                yield day
            day += timedelta(days=1)


def cases(calendar: WorkingCalendar, rng: random.Random) -> list[Step]:
    c = Cases(calendar, rng)
    for n, day in enumerate(c.days()):
        # 政务服务事项 at the service centre, one a working day: ≥ 50 % 即办件, ≥ 70 % 一趟不用跑.
        opened = _office(day, 9, rng.randint(0, 50))
        instantly = rng.random() < 0.56
        closed = opened + timedelta(minutes=rng.randint(10, 40)) if instantly \
            else _office(c.working_days_after(day, rng.randint(1, 4)), 15, 30)
        c.case("admin-service-center", "service_item", f"ZW-{day:%Y%m%d}-{n:04d}", opened, closed,
               instantly=instantly, trips=0 if rng.random() < 0.75 else 1, title="政务服务事项申请")

        # 企业开办, every third working day at each of its two desks: mostly within the morning (≤ 5 working
        # hours), one in ten the next working day (past its time: 时限预警).
        if n % 3 == 0:
            for department in ("market-regulation", "admin-service-center"):
                opened = _office(day, 8, rng.randint(10, 50))
                closed = opened + timedelta(hours=rng.uniform(1.2, 2.4)) if rng.random() < 0.9 \
                    else _office(c.working_days_after(day, 1), 9, 0)
                c.case(department, "company_startup", f"KB-{department[:2].upper()}-{day:%Y%m%d}", opened, closed,
                       steps=("registration", "seal", "tax_setup"), title="企业开办")

        # 出口退税, weekly: 3–8 working days, one in six waiting for supplementary documents.
        if n % 5 == 0:
            opened = _office(day, 10, rng.randint(0, 59))
            working_days = rng.randint(3, 8)
            pause = None
            if rng.random() < 1 / 6:
                paused = c.working_days_after(day, 1)
                pause = ("supplement", _office(paused, 15, 0), _office(c.working_days_after(paused, 3), 10, 0))
                working_days += 3
            c.case("tax-bureau", "export_tax_refund", f"TSR-{day:%Y%m%d}-{n:04d}", opened,
                   _office(c.working_days_after(day, working_days), 16, 0), pause=pause, title="出口退（免）税申报")

        # 低压办电, every other week: 7–14 working days in two or three steps.
        if n % 10 == 1:
            opened = _office(day, 9, 30)
            c.case("power-supply-center", "power_connection_low_voltage", f"GD-{day:%Y%m%d}", opened,
                   _office(c.working_days_after(day, rng.randint(7, 14)), 17, 0),
                   steps=("application", "connection")[: rng.randint(1, 2)] + ("power_on",), title="低压非居民用户办电")

        # 建筑许可, twice a month: 30–50 working days, an expert review paused, 9–13 steps (≤ 15).
        if n % 10 == 3:
            working_days = rng.randint(30, 50)
            review = c.working_days_after(day, 10)
            review_days = rng.randint(5, 10)
            pause = ("expert_review", _office(review, 10, 0), _office(c.working_days_after(review, review_days), 10, 0))
            c.case("construction", "building_permit", f"JZ-{day:%Y%m%d}", _office(day, 10, 0),
                   _office(c.working_days_after(day, working_days + review_days), 16, 0), pause=pause,
                   steps=tuple(f"step_{k:02d}" for k in range(1, rng.randint(9, 13) + 1)), title="建设工程施工许可")

    # 简易破产, about one a month, some filed before the plan: 130–200 calendar days (≤ 180 on average).
    for k, month in enumerate(_months(date(2021, 1, 1), date(2021, 11, 30)), start=1):
        filed = working_day_on_or_after(calendar, date(*month, rng.randint(5, 20)))
        closed = working_day_on_or_after(calendar, filed + timedelta(days=rng.randint(130, 200)))
        c.case("district-court", "simple_bankruptcy", f"2021-MIN0102-PO-{k}", _office(filed, 9, 0), _office(closed, 16, 0),
               reference=f"（2021）闽0102破{k}号", title="破产清算案（简易程序）")
    return c.steps


# -- the year, in order --------------------------------------------------------------------------------


def plan_year(seed: int = SEED, catalog: Catalog | None = None) -> list[Step]:
    """Every step of the demo year, ordered by plan instant (stable: same-instant steps keep their order)."""
    catalog = catalog or load_catalog()
    rng = random.Random(seed)
    calendar = WorkingCalendar()
    reported = [*stories(), *routine(catalog, calendar, rng)]
    return sorted([*reported, *verifications(reported, calendar), *cases(calendar, rng)])


def departments(steps: list[Step]) -> set[str]:
    """The departments that post events in the year (each needs an intake key)."""
    return {s.action.department for s in steps if isinstance(s.action, Report)}


def event_id(seed: int, index: int) -> str:
    """A step's CloudEvent id: the same seed gives the same ids, so a replayed year is a duplicate, not a second year."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:duban:demo:{seed}:{index}"))
