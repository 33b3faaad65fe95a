"""The overview (总览) and the words the board uses for the services' codes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from duban.catalog import Catalog

LIGHTS = ("red", "yellow", "green")
LIGHT_NAMES = {"red": "红", "yellow": "黄", "green": "绿"}
STATUS_NAMES = {"not_started": "未开始", "in_progress": "推进中", "done": "已完成", "blocked": "受阻",
                "awaiting_verification": "待复核"}
REASON_NAMES = {"on_track": "按计划推进", "deadline_near": "临近期限", "past_due": "已逾期", "done": "已完成", None: "待评估"}
OCCURRENCE_NAMES = {"open": "进行中", "done": "已完成", "overdue": "已逾期", "awaiting_verification": "待复核"}
EXTENSION_NAMES = {"requested": "待审批", "approved": "已同意", "rejected": "已驳回"}
VERIFICATION_NAMES = {"awaiting": "待复核", "verified": "已销号", "returned": "已退回"}
LEVEL_NAMES = {1: "提醒", 2: "催办", 3: "督办"}
# The notifier's escalation history (GET /v1/escalations/{id}/history), entry by entry.
TRAIL_NAMES = {"opened": "发起", "level-changed": "升级", "light-changed": "亮灯变化", "resolved": "办结",
               "acknowledged": "签收", "extension-decided": "延期审批", "awaiting-verification": "待复核",
               "verified": "复核通过", "returned": "复核退回", "resumed": "恢复督办", "delivery": "送达"}
UNIT_NAMES = {"working_days": "个工作日", "calendar_days": "天", "working_hours": "个工作小时", "ratio": "（比例）",
              "count": "项", "steps": "个环节", "area_m2": "平方米", "hours_per_year": "小时/年"}


# The pause reasons the case events allow, as their schema names them.
PAUSE_REASONS = {"supplement": "补正材料", "hearing": "听证", "expert_review": "专家评审", "public_notice": "公告",
                 "inspection": "检验检测", "appraisal": "鉴定", "tender": "招标拍卖"}


def department_names(catalog: Catalog, codes: list[str] | tuple[str, ...]) -> list[str]:
    """Chinese names of department codes; a code the catalog lacks shows as itself rather than vanishing."""
    names = []
    for code in codes:
        try:
            names.append(catalog.department(code).name)
        except KeyError:
            names.append(code)
    return names


@dataclass(frozen=True)
class Filters:
    area: str | None = None
    department: str | None = None
    light: str | None = None
    awaiting: bool = False  # 待复核: only tasks with a done report or completion awaiting verification

    def keeps(self, task: dict) -> bool:
        return (self.area in (None, task["area"])) and (self.light in (None, task["light"])) \
            and (not self.awaiting or task["awaiting"])


@dataclass
class AreaGroup:
    id: str
    name: str
    tasks: list[dict] = field(default_factory=list)


@dataclass
class Overview:
    counts: dict[str, int]
    total: int
    awaiting: int  # of the tasks shown, those with something awaiting verification
    groups: list[AreaGroup]


def overview(catalog: Catalog, tasks: list[dict], filters: Filters, awaiting: set[str] = frozenset()) -> Overview:
    """The tasks the filters keep, by area in the plan's order, each with its lead departments' names; the
    light counts are those of the tasks shown. `awaiting`: the tasks with a done report or milestone
    completion awaiting verification (the tracker's /v1/verifications). (The department filter is applied by the tracker, which knows
    which tasks are whose.)"""
    kept = [t for t in ({**t, "awaiting": t["id"] in awaiting} for t in tasks) if filters.keeps(t)]
    groups = {a.id: AreaGroup(a.id, a.name) for a in catalog.areas}
    for task in sorted(kept, key=lambda t: t["id"]):
        groups[task["area"]].tasks.append({**task, "lead_names": department_names(catalog, task["lead"])})
    counts = Counter(t["light"] for t in kept)
    return Overview(counts={light: counts.get(light, 0) for light in LIGHTS}, total=len(kept),
                    awaiting=sum(t["awaiting"] for t in kept),
                    groups=[g for g in groups.values() if g.tasks])


def filterable_departments(catalog: Catalog) -> list[tuple[str, str]]:
    """The units some task names (lead or responsible), for the department filter."""
    named = {code for t in catalog.tasks for code in t.departments}
    return [(d.code, d.name) for d in catalog.departments if d.kind == "unit" and d.code in named]


@dataclass(frozen=True)
class Pager:
    """Which slice of a long list a page shows."""

    page: int
    size: int
    total: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages
