"""What a notice says, in Chinese: the facts are fixed when the delivery is planned (and stored with
it), the wording per channel when it is sent. Each kind of notice names its heading, its facts and
what it asks; `title`, `markdown` and `plain_text` word any of them."""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from datetime import date, datetime

from duban.catalog import Catalog
from duban.workcal import to_shanghai
from services.notifier.domain.escalation import LEVEL_NAMES

LEVEL_ORDINALS = {1: "一", 2: "二", 3: "三"}
LIGHTS = {"yellow": "黄灯（临近截止，尚未完成）", "red": "红灯（已逾期，尚未完成）"}
CALLS = {
    1: "请责任单位加快推进，按期完成。",
    2: "请牵头部门负责同志督促推进，尽快完成。",
    3: "请区政府办公室督办，并督促相关单位限期整改。",
}
UNITS = {"working_hours": "个工作小时", "working_days": "个工作日", "calendar_days": "天"}
SIGNATURE = "—— 鼓楼区优化营商环境督办系统"


def _chinese_date(iso: str) -> str:
    day = date.fromisoformat(iso[:10])
    return f"{day.year}年{day.month}月{day.day}日"


def _chinese_time(iso: str) -> str:
    local = to_shanghai(datetime.fromisoformat(iso))
    return f"{_chinese_date(local.date().isoformat())} {local:%H:%M}"


def _number(value: float) -> str:
    return f"{value:g}"


DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@dataclass(frozen=True)
class Attachment:
    filename: str
    media_type: str
    content: bytes = field(repr=False)


class _Stored:
    """A notice's facts are stored with its delivery as JSON (the dataclass fields)."""

    def as_json(self) -> dict:
        return asdict(self)

    def html_body(self) -> str | None:
        """An HTML rendering for channels that take one (e-mail), besides the plain text; None: text only."""
        return None

    def attachments(self) -> list[Attachment]:
        return []


@dataclass(frozen=True)
class Notice(_Stored):
    """An escalation's notice (督办通知)."""

    escalation_id: int
    item: str
    task_id: str
    task_title: str
    milestone_id: str | None
    milestone_title: str | None
    light: str
    level: int
    deadline: str  # ISO date
    addressees: list[str]  # department names
    lead: list[str]
    responsible: list[str]

    KIND = "escalation"
    TYPE = "duban.notifier.escalation-notice.v1"

    @property
    def subject(self) -> str:
        return self.item

    def heading(self) -> str:
        what = f"节点 {self.milestone_id}" if self.milestone_id else "任务"
        light = "红灯" if self.light == "red" else "黄灯"
        return f"【{LEVEL_NAMES[self.level]}】{self.task_id} {self.task_title}：{what}亮{light}"

    def facts(self) -> list[tuple[str, str]]:
        rows = [("任务", f"{self.task_id} {self.task_title}")]
        if self.milestone_id:
            rows.append(("节点", f"{self.milestone_id} {self.milestone_title}"))
        rows += [
            ("灯色", LIGHTS[self.light]),
            ("截止日期", _chinese_date(self.deadline)),
            ("督办级别", f"第{LEVEL_ORDINALS[self.level]}级 {LEVEL_NAMES[self.level]}"),
            ("致", "、".join(self.addressees)),
            ("牵头部门", "、".join(self.lead)),
        ]
        if self.responsible:
            rows.append(("责任单位", "、".join(self.responsible)))
        return rows

    def ask(self) -> str:
        return CALLS[self.level]


@dataclass(frozen=True)
class CaseWarningNotice(_Stored):
    """A case nearing or past its allowed time (案件时限预警)."""

    case_id: str
    department: str  # code of the department handling the case
    department_name: str
    case_type: str
    case_type_name: str
    threshold: int  # 50, 75 or 100 (% of the allowed time)
    indicator: str
    indicator_name: str
    task_id: str
    unit: str
    allowed: float
    elapsed: float
    opened_at: str  # ISO instant
    as_of: str  # ISO instant
    paused: bool
    addressees: list[str]  # department names
    lead: list[str]
    reference: str | None = None
    case_title: str | None = None

    KIND = "case-warning"
    TYPE = "duban.notifier.case-warning-notice.v1"

    @property
    def subject(self) -> str:
        return self.case_id

    def heading(self) -> str:
        state = "已到办理时限" if self.threshold == 100 else f"已用时{self.threshold}%"
        return f"【时限预警】{self.case_type_name} {self.reference or self.case_id}：{state}"

    def facts(self) -> list[tuple[str, str]]:
        rows = [("案件", f"{self.case_id}" + (f"（{self.reference}）" if self.reference else "")
                 + (f" {self.case_title}" if self.case_title else "")),
                ("案件类型", self.case_type_name),
                ("办理部门", self.department_name),
                ("受理时间", _chinese_time(self.opened_at)),
                ("办理时限", f"{_number(self.allowed)}{UNITS[self.unit]}（{self.indicator_name}，任务 {self.task_id}）"),
                ("已用时", f"{_number(self.elapsed)}{UNITS[self.unit]}（计至 {_chinese_time(self.as_of)}，扣除暂停时间）")]
        if self.paused:
            rows.append(("状态", "计时暂停中"))
        rows.append(("致", "、".join(self.addressees)))
        return rows

    def ask(self) -> str:
        if self.threshold == 100:
            return "该案件已到办理时限，请办理部门立即办结并说明原因，请牵头部门督促。"
        return "请办理部门抓紧办理，确保在时限内办结。"


LIGHT_WORDS = {"green": "绿灯", "yellow": "黄灯", "red": "红灯", None: "未评估"}


def _item_line(item: dict) -> str:
    """One open item of a digest: what, light, due date and what is asked."""
    what = f"{item['item']} {item['title']}"
    level = f"，{LEVEL_NAMES[item['level']]}" if item.get("level") else ""
    due = f"，截止 {_chinese_date(item['deadline'])}" if item.get("deadline") else ""
    ask = f"：{CALLS[item['level']]}" if item.get("level") else ""
    return f"{what}（{LIGHT_WORDS[item['light']]}{due}{level}）{ask}"


@dataclass(frozen=True)
class DigestNotice(_Stored):
    """A department's daily digest (每日督办提醒): its open items at the opening of the working day."""

    department: str
    department_name: str
    day: str  # ISO date
    items: list[dict]  # open escalations of its tasks: item, title, light, deadline, level
    warnings: list[dict]  # case warnings since the previous digest: case_id, case_type_name, threshold, elapsed, allowed, unit

    KIND = "digest"
    TYPE = "duban.notifier.digest-notice.v1"

    @property
    def subject(self) -> str:
        return self.department

    def heading(self) -> str:
        return (f"【督办日报】{self.department_name} {_chinese_date(self.day)}："
                f"{len(self.items)}项督办事项，{len(self.warnings)}件案件预警")

    def facts(self) -> list[tuple[str, str]]:
        rows = [(f"督办事项{i}", _item_line(item)) for i, item in enumerate(self.items, 1)]
        rows += [(f"案件预警{i}", f"{w['case_type_name']} {w['case_id']} 已用时{w['threshold']}%"
                  f"（{_number(w['elapsed'])}/{_number(w['allowed'])}{UNITS[w['unit']]}）")
                 for i, w in enumerate(self.warnings, 1)]
        return rows

    def ask(self) -> str:
        return "请按要求推进上述事项，确保按期完成。"


@dataclass(frozen=True)
class WeeklyNotice(_Stored):
    """A lead department's Monday digest (每周督办周报): every task it leads, with its light."""

    department: str
    department_name: str
    week_of: str  # ISO date of the week's first working day
    tasks: list[dict]  # item, title, light, deadline (when escalated), level (when escalated)

    KIND = "weekly-digest"
    TYPE = "duban.notifier.weekly-digest-notice.v1"

    @property
    def subject(self) -> str:
        return self.department

    def heading(self) -> str:
        red = sum(t["light"] == "red" for t in self.tasks)
        return f"【督办周报】{self.department_name} {_chinese_date(self.week_of)}：牵头{len(self.tasks)}项任务，{red}项红灯"

    def facts(self) -> list[tuple[str, str]]:
        return [(f"任务{i}", _item_line(task)) for i, task in enumerate(self.tasks, 1)]

    def ask(self) -> str:
        return "请牵头部门统筹推进，对黄灯、红灯任务督促责任单位加快落实。"


@dataclass(frozen=True)
class BulletinNotice(_Stored):
    """The week's 督查通报 the board issued, mailed to the district office: its summary as text, the bulletin
    as HTML, the Word document attached. The document and HTML are the stored bulletin's (the bulletins
    table), put in when the mail is sent; only the facts below are stored with each delivery."""

    bulletin_id: int
    week: str
    title: str
    summary: list[str]
    html: str = field(default="", repr=False)
    document: bytes = field(default=b"", repr=False)

    KIND = "bulletin"
    STORED = ("bulletin_id", "week", "title", "summary")

    @property
    def subject(self) -> str:
        return str(self.bulletin_id)

    def as_json(self) -> dict:
        return {name: getattr(self, name) for name in self.STORED}

    def heading(self) -> str:
        return self.title

    def facts(self) -> list[tuple[str, str]]:
        return [("周次", self.week), *(("总体情况", line) for line in self.summary)]

    def ask(self) -> str:
        return f"《{self.title}》全文见附件（Word），请各单位对照通报事项抓紧落实。"

    def html_body(self) -> str:
        return (f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>{html.escape(self.title)}'
                f"</title></head><body>{self.html}<p>{html.escape(SIGNATURE)}</p></body></html>")

    def attachments(self) -> list[Attachment]:
        return [Attachment(f"{self.title}.docx", DOCX, self.document)]


NOTICE_KINDS = {kind.KIND: kind for kind in (Notice, CaseWarningNotice, DigestNotice, WeeklyNotice, BulletinNotice)}


def notice_from_json(kind: str, data: dict):
    return NOTICE_KINDS[kind](**data)


def build_notice(catalog: Catalog, *, escalation_id: int, item: str, task_id: str, light: str, level: int,
                 deadline: date, departments: list[str]) -> Notice:
    task = catalog.task(task_id)
    milestone = catalog.milestone(item) if item != task_id else None
    return Notice(escalation_id, item, task.id, task.title, milestone.id if milestone else None,
                  milestone.title if milestone else None, light, level, deadline.isoformat(),
                  names(catalog, departments), names(catalog, task.lead), names(catalog, task.responsible))


def names(catalog: Catalog, codes) -> list[str]:
    return [catalog.department(c).name for c in codes]


def title(notice) -> str:
    return notice.heading()


def markdown(notice) -> str:
    """For the WeCom and DingTalk robots, whose markdown both take bold and quotes."""
    lines = [f"**{title(notice)}**", ""]
    lines += [f"> {label}：{value}" for label, value in notice.facts()]
    return "\n".join([*lines, "", notice.ask()])


def plain_text(notice) -> str:
    lines = [f"{label}：{value}" for label, value in notice.facts()]
    return "\n".join([title(notice), "", *lines, "", notice.ask(), "", SIGNATURE])
