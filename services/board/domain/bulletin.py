"""督查通报: the weekly bulletin the district office circulates — a summary, the departments' ranking, the
red and overdue items with their days overdue, the indicators against their targets with forecasts, and
the extensions granted that week — assembled from the read APIs' answers as of the moment it is issued."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from duban.catalog import Catalog
from services.board.domain import scorecard
from services.board.domain.views import LIGHT_NAMES, UNIT_NAMES, department_names

SHANGHAI = ZoneInfo("Asia/Shanghai")
WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
COMPARISONS = {"le": "≤", "ge": "≥", "between": "", "approx": "约"}


class BadWeek(ValueError):
    """Not an ISO week such as 2021-W38."""


def week_days(week: str) -> tuple[date, date]:
    """Monday and Sunday of an ISO week (2021-W38: 2021-09-20 … 2021-09-26)."""
    match = WEEK.match(week)
    if not match:
        raise BadWeek(f"{week!r} is not an ISO week such as 2021-W38")
    try:
        monday = date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError as error:
        raise BadWeek(f"{week!r}: {error}") from None
    return monday, monday + timedelta(days=6)


def week_of(day: date) -> str:
    year, number, _ = day.isocalendar()
    return f"{year}-W{number:02d}"


@dataclass(frozen=True)
class OverdueItem:
    task_id: str
    title: str
    item: str  # the task, or the milestone id
    leads: str
    due: date
    days_overdue: int


@dataclass(frozen=True)
class IndicatorLine:
    name: str
    task: str
    value: float | None
    unit: str
    target: str
    forecast: float | None
    light: str


@dataclass(frozen=True)
class Extension:
    task_id: str
    milestone_id: str
    original_due: str
    new_due: str
    reason: str
    decided_by: str


@dataclass
class Bulletin:
    week: str
    monday: date
    sunday: date
    as_of: datetime
    title: str
    summary: list[str]
    ranking: list[tuple[int, scorecard.Scorecard]]
    red_tasks: list[OverdueItem]
    overdue_milestones: list[OverdueItem]
    indicators: list[IndicatorLine]
    indicator_period: str
    extensions: list[Extension] = field(default_factory=list)


def as_of_for(week: str, now: datetime) -> datetime:
    """The end of the week (Sunday 24:00, Beijing), or now while the week is still running."""
    _, sunday = week_days(week)
    end = datetime.combine(sunday + timedelta(days=1), time(0), SHANGHAI)
    return min(now, end)


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}".rstrip("0").rstrip(".")


def _target(item: dict) -> str:
    upper = f"–{_number(item['target_max'])}" if item["target_max"] is not None else ""
    return f"{COMPARISONS[item['comparison']]}{_number(item['target'])}{upper}{UNIT_NAMES.get(item['unit'], '')}"


def deadline_of(occurrence: dict) -> date:
    """The date after which an occurrence is overdue: its deadline in force, or a retroactive one's grace."""
    if occurrence.get("retroactive") and occurrence.get("grace_until"):
        return date.fromisoformat(occurrence["grace_until"])
    return date.fromisoformat(occurrence["due"])


def overdue_at(occurrence: dict, as_of: datetime) -> bool:
    """Past its deadline at `as_of` and not done by then: judged by dates, so a past week's bulletin lists what
    was overdue in that week, not what is overdue today."""
    done_at = occurrence.get("done_at")
    if done_at and datetime.fromisoformat(done_at) <= as_of:
        return False
    return deadline_of(occurrence) < as_of.astimezone(SHANGHAI).date()


def assemble(catalog: Catalog, *, week: str, now: datetime, tasks: list[dict], indicators: dict,
             escalations: list[dict], extensions: list[dict]) -> Bulletin:
    """`tasks`: task details (with milestones) as the tracker answers; `indicators`: the metrics service's
    list for the year of the week; `extensions`: the approved requests."""
    monday, sunday = week_days(week)
    as_of = as_of_for(week, now)
    today = as_of.astimezone(SHANGHAI).date()
    lights = {light: sum(t["light"] == light for t in tasks) for light in LIGHT_NAMES}
    leads_of = {t["id"]: "、".join(department_names(catalog, t["lead"])) for t in tasks}

    # The lights are the tracker's as of now; the days overdue are counted to the bulletin's as-of date.
    red = sorted((OverdueItem(t["id"], t["title"], t["id"], leads_of[t["id"]], date.fromisoformat(t["next_due"]),
                              (today - date.fromisoformat(t["next_due"])).days)
                  for t in tasks if t["light"] == "red" and t["next_due"] and date.fromisoformat(t["next_due"]) < today),
                 key=lambda i: (-i.days_overdue, i.task_id))
    overdue = sorted((OverdueItem(t["id"], t["title"], m["milestone_id"], leads_of[t["id"]], deadline_of(m),
                                  (today - deadline_of(m)).days)
                      for t in tasks for m in t["milestones"] if overdue_at(m, as_of)),
                     key=lambda i: (-i.days_overdue, i.item))
    lines = [IndicatorLine(i["name"], i["task"], i["value"], UNIT_NAMES.get(i["unit"], i["unit"]), _target(i),
                           i["forecast"], LIGHT_NAMES.get(i["light"], "未计量")) for i in indicators["items"]]
    granted = [Extension(e["task_id"], e["milestone_id"], e["original_due"], e["requested_due"], e["reason"],
                         e["decided_by"])
               for e in sorted(extensions, key=lambda e: e["decided_at"] or "")
               if e["status"] == "approved" and e["decided_at"]
               and monday <= datetime.fromisoformat(e["decided_at"]).astimezone(SHANGHAI).date() <= sunday]
    met = sum(i["compliant"] is True for i in indicators["items"])
    missed = sum(i["compliant"] is False for i in indicators["items"])
    figures = [f for item in indicators["items"] for f in item["departments"]]
    cards = scorecard.scorecards(catalog, tasks, figures, escalations, today)
    number = int(week.split("-W")[1])
    summary = [
        f"截至{as_of.astimezone(SHANGHAI):%Y年%m月%d日 %H:%M}，{catalog.plan.number}确定的{len(tasks)}项任务中，"
        f"红灯{lights['red']}项、黄灯{lights['yellow']}项、绿灯{lights['green']}项；"
        f"已完成{sum(t['status'] == 'done' for t in tasks)}项。",
        f"逾期未完成的节点{len(overdue)}个，本周（{monday:%m月%d日}至{sunday:%m月%d日}）批准延期{len(granted)}项。",
        f"{len(lines)}项指标中（{indicators['period']}年度），达标{met}项、未达标{missed}项、"
        f"尚无计量{len(lines) - met - missed}项。",
    ]
    return Bulletin(week=week, monday=monday, sunday=sunday, as_of=as_of,
                    title=f"鼓楼区优化营商环境工作督查通报（{week[:4]}年第{number}周）", summary=summary,
                    ranking=scorecard.ranking(cards), red_tasks=red, overdue_milestones=overdue, indicators=lines,
                    indicator_period=indicators["period"], extensions=granted)


@dataclass(frozen=True)
class Section:
    """One numbered part of the bulletin as both renderings (HTML, Word) show it."""

    heading: str
    paragraphs: list[str]
    header: tuple[str, ...] = ()
    rows: list[tuple[str, ...]] = field(default_factory=list)
    empty: str = ""  # said instead of an empty table


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def sections(bulletin: Bulletin) -> list[Section]:
    ranking = [(str(rank), c.name, f"{_rate(c.on_time_rate)}（{c.on_time}/{c.milestones_due}）", str(c.overdue),
                str(c.red_tasks), f"{c.indicators_met}/{c.indicators_measured}" if c.indicators_measured else "—",
                _number(c.answer_hours) if c.answered else ("未签收" if c.escalations else "无督办"))
               for rank, c in bulletin.ranking]
    overdue = [(f"{i.task_id} {i.title}", "任务" if i.item == i.task_id else i.item, i.leads, i.due.isoformat(),
                str(i.days_overdue)) for i in [*bulletin.red_tasks, *bulletin.overdue_milestones]]
    indicators = [(i.name, i.task, f"{_number(i.value)}{i.unit if i.value is not None else ''}", i.target,
                   _number(i.forecast), i.light) for i in bulletin.indicators]
    extensions = [(e.task_id, e.milestone_id, e.original_due, e.new_due, e.reason, e.decided_by)
                  for e in bulletin.extensions]
    return [
        Section("一、总体情况", bulletin.summary),
        Section("二、部门排名", ["依次比较逾期节点数、按期完成率、指标达标率和督办响应时间。"],
                ("名次", "部门", "按期完成率", "逾期节点", "红灯任务", "指标达标", "督办响应（小时）"), ranking,
                "暂无部门数据。"),
        Section("三、红灯及逾期事项", ["以下事项已超过期限，请牵头部门加快推进并及时报送进展。"],
                ("任务", "事项", "牵头部门", "期限", "逾期天数"), overdue, "本周无红灯及逾期事项。"),
        Section("四、指标完成情况", [f"{bulletin.indicator_period}年度数据，预测为按在办件推算的期末值。"],
                ("指标", "任务", "当前值", "目标", "预测", "亮灯"), indicators, "暂无指标数据。"),
        Section("五、本周批准延期", [], ("任务", "节点", "原期限", "新期限", "理由", "审批人"), extensions,
                "本周未批准延期申请。"),
    ]
