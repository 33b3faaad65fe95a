"""What a notice says, in Chinese: the facts are fixed when the delivery is planned (and stored with
it), the wording per channel when it is sent."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date

from duban.catalog import Catalog
from services.notifier.escalation import LEVEL_NAMES

LEVEL_ORDINALS = {1: "一", 2: "二", 3: "三"}
LIGHTS = {"yellow": "黄灯（临近截止，尚未完成）", "red": "红灯（已逾期，尚未完成）"}
CALLS = {
    1: "请责任单位加快推进，按期完成。",
    2: "请牵头部门负责同志督促推进，尽快完成。",
    3: "请区政府办公室督办，并督促相关单位限期整改。",
}


@dataclass(frozen=True)
class Notice:
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

    def as_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Notice:
        return cls(**data)


def build_notice(catalog: Catalog, *, escalation_id: int, item: str, task_id: str, light: str, level: int,
                 deadline: date, departments: list[str]) -> Notice:
    task = catalog.task(task_id)
    milestone = catalog.milestone(item) if item != task_id else None

    def names(codes) -> list[str]:
        return [catalog.department(c).name for c in codes]

    return Notice(escalation_id, item, task.id, task.title, milestone.id if milestone else None,
                  milestone.title if milestone else None, light, level, deadline.isoformat(),
                  names(departments), names(task.lead), names(task.responsible))


def _chinese_date(iso: str) -> str:
    day = date.fromisoformat(iso)
    return f"{day.year}年{day.month}月{day.day}日"


def title(notice: Notice) -> str:
    what = f"节点 {notice.milestone_id}" if notice.milestone_id else "任务"
    light = "红灯" if notice.light == "red" else "黄灯"
    return f"【{LEVEL_NAMES[notice.level]}】{notice.task_id} {notice.task_title}：{what}亮{light}"


def facts(notice: Notice) -> list[tuple[str, str]]:
    rows = [("任务", f"{notice.task_id} {notice.task_title}")]
    if notice.milestone_id:
        rows.append(("节点", f"{notice.milestone_id} {notice.milestone_title}"))
    rows += [
        ("灯色", LIGHTS[notice.light]),
        ("截止日期", _chinese_date(notice.deadline)),
        ("督办级别", f"第{LEVEL_ORDINALS[notice.level]}级 {LEVEL_NAMES[notice.level]}"),
        ("致", "、".join(notice.addressees)),
        ("牵头部门", "、".join(notice.lead)),
    ]
    if notice.responsible:
        rows.append(("责任单位", "、".join(notice.responsible)))
    return rows


def markdown(notice: Notice) -> str:
    """For the WeCom and DingTalk robots, whose markdown both take bold and quotes."""
    lines = [f"**{title(notice)}**", ""]
    lines += [f"> {label}：{value}" for label, value in facts(notice)]
    return "\n".join([*lines, "", CALLS[notice.level]])


def plain_text(notice: Notice) -> str:
    lines = [f"{label}：{value}" for label, value in facts(notice)]
    return "\n".join([title(notice), "", *lines, "", CALLS[notice.level], "", "—— 鼓楼区优化营商环境督办系统"])
