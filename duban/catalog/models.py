"""Immutable records of the plan catalog and the `Catalog` that indexes them.

Records only check what a single record can know (shapes, enums, field combinations); whether
references between records resolve is the loader's job, because it sees all files at once.
"""

from __future__ import annotations

import calendar
import unicodedata
from datetime import date
from functools import cached_property
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

DepartmentCode = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]
TaskId = Annotated[str, StringConstraints(pattern=r"^T[0-9]{2}$")]
AreaId = Annotated[str, StringConstraints(pattern=r"^A[1-8]$")]
SnakeId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")]
Recurrence = Literal["yearly"]


def normalize_name(name: str) -> str:
    """The form names are compared in: the plan mixes full- and half-width brackets
    ("区发改局（科技局）" / "区发改局(科技局)") and text extraction split names with spaces."""
    return "".join(unicodedata.normalize("NFKC", name).split())


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Plan(_Record):
    """The plan document itself (鼓政办〔2021〕18号)."""

    number: str
    title: str
    issuer: DepartmentCode
    issued: date
    year: int
    goals: str  # 二、主要目标, verbatim: the source of three indicators

    @property
    def year_end(self) -> date:
        """Due date of work the text does not date: this is the plan for `year`."""
        return date(self.year, 12, 31)


class Area(_Record):
    id: AreaId
    numeral: str
    name: str
    aliases: tuple[str, ...] = ()


class Department(_Record):
    code: DepartmentCode
    name: str
    aliases: tuple[str, ...] = ()
    kind: Literal["unit", "collective"]
    members: tuple[DepartmentCode, ...] = ()
    members_note: str | None = None
    open_membership: bool = False
    note: str | None = None  # why it is listed when no task names it

    @model_validator(mode="after")
    def _membership_fits_kind(self) -> Department:
        if self.kind == "unit" and (self.members or self.open_membership or self.members_note):
            raise ValueError("a unit has no members")
        if self.kind == "collective" and not (self.members or self.open_membership or self.members_note):
            raise ValueError("a collective needs members, open_membership or a members_note")
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


class Milestone(_Record):
    id: Annotated[str, StringConstraints(pattern=r"^T[0-9]{2}-M[0-9]+$")]
    title: str
    due: date  # for a recurring milestone, its first occurrence
    stated: bool  # the due date is written in the plan (not the plan-year default)
    recurrence: Recurrence | None = None
    source_text: str | None = None  # the plan's sentence it comes from

    def occurrences(self, through_year: int) -> list[date]:
        """Due dates up to the end of `through_year`: the one date of a one-off milestone, or one
        date a year, from the first, for a yearly one."""
        if self.recurrence is None:
            return [self.due] if self.due.year <= through_year else []
        return [_same_day_in_year(self.due, year) for year in range(self.due.year, through_year + 1)]


def _same_day_in_year(day: date, year: int) -> date:
    # 29 February falls back to the 28th in common years.
    return date(year, day.month, min(day.day, calendar.monthrange(year, day.month)[1]))


class Task(_Record):
    id: TaskId
    area: AreaId
    title: str
    kind: Literal["city_assigned", "district_featured"]  # 承接市级工作任务 / 我区特色工作任务
    lead: tuple[DepartmentCode, ...] = Field(min_length=1)
    responsible: tuple[DepartmentCode, ...] = ()
    measures: str
    milestones: tuple[Milestone, ...] = Field(min_length=1)

    @property
    def departments(self) -> tuple[DepartmentCode, ...]:
        return (*self.lead, *self.responsible)


class CaseType(_Record):
    id: SnakeId
    name: str
    definition: str


class Feed(_Record):
    """Where an indicator's numbers come from and who may send them."""

    kind: Literal["case", "report"]
    case_type: SnakeId | None = None
    departments: tuple[DepartmentCode, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _case_type_iff_case(self) -> Feed:
        if (self.kind == "case") != (self.case_type is not None):
            raise ValueError("a case feed names its case_type; a report feed has none")
        return self


class Indicator(_Record):
    id: SnakeId
    task: TaskId
    name: str
    unit: Literal[
        "calendar_days", "working_days", "working_hours", "hours_per_year", "steps", "ratio", "count", "area_m2"
    ]
    aggregate: Literal["mean", "max", "ratio", "count", "sum", "value"]
    comparison: Literal["le", "ge", "between", "approx"]
    target: float
    target_max: float | None = None
    deadline: date  # for a recurring indicator, the first period's end
    recurrence: Recurrence | None = None
    aspirational: bool = False  # 力争: a goal to strive for, not a commitment
    # A better value the plan names beside the target ("2到3个": at most 3, 2 hoped for); shown, not judged.
    aspiration: float | None = None
    feed: Feed
    source_text: str
    definition: str

    @model_validator(mode="after")
    def _target_fits(self) -> Indicator:
        if (self.comparison == "between") != (self.target_max is not None):
            raise ValueError("target_max goes with comparison 'between', and only with it")
        if self.target_max is not None and self.target_max <= self.target:
            raise ValueError("target_max must exceed target")
        if self.unit == "ratio" and not 0 <= self.target <= 1:
            raise ValueError("a ratio target is a fraction between 0 and 1")
        if self.aspiration is not None and not _beyond(self.comparison, self.aspiration, self.target):
            raise ValueError("an aspiration lies beyond the target, on the side the comparison favours")
        return self


def _beyond(comparison: str, aspiration: float, target: float) -> bool:
    return {"le": aspiration < target, "ge": aspiration > target}.get(comparison, False)


class Catalog(_Record):
    """The whole plan, with lookups. Built and checked by `duban.catalog.load_catalog`."""

    plan: Plan
    areas: tuple[Area, ...]
    tasks: tuple[Task, ...]
    departments: tuple[Department, ...]
    indicators: tuple[Indicator, ...]
    # Named apart from `case_types` (the set of ids), serialized as "case_types".
    case_type_defs: tuple[CaseType, ...] = Field(serialization_alias="case_types")

    def as_json(self) -> dict:
        """The catalog as JSON-ready data; dates in ISO form."""
        return self.model_dump(mode="json", by_alias=True)

    # -- lookups -------------------------------------------------------------------------------

    @cached_property
    def _areas(self) -> dict[str, Area]:
        return {a.id: a for a in self.areas}

    @cached_property
    def _tasks(self) -> dict[str, Task]:
        return {t.id: t for t in self.tasks}

    @cached_property
    def _departments(self) -> dict[str, Department]:
        return {d.code: d for d in self.departments}

    @cached_property
    def _codes_by_name(self) -> dict[str, str]:
        return {normalize_name(n): d.code for d in self.departments for n in d.names}

    @cached_property
    def _milestones(self) -> dict[str, Milestone]:
        return {m.id: m for t in self.tasks for m in t.milestones}

    @cached_property
    def _indicators(self) -> dict[str, Indicator]:
        return {i.id: i for i in self.indicators}

    @cached_property
    def _case_types(self) -> dict[str, CaseType]:
        return {c.id: c for c in self.case_type_defs}

    @staticmethod
    def _get(index: dict, key: str, what: str):
        try:
            return index[key]
        except KeyError:
            raise KeyError(f"unknown {what} {key!r}") from None

    def area(self, area_id: str) -> Area:
        return self._get(self._areas, area_id, "area")

    def task(self, task_id: str) -> Task:
        return self._get(self._tasks, task_id, "task")

    def milestone(self, milestone_id: str) -> Milestone:
        return self._get(self._milestones, milestone_id, "milestone")

    def department(self, code: str) -> Department:
        return self._get(self._departments, code, "department")

    def department_by_name(self, name: str) -> Department:
        """The department a Chinese name or alias denotes, spacing and bracket width ignored."""
        return self.department(self._get(self._codes_by_name, normalize_name(name), "department name"))

    def indicator(self, indicator_id: str) -> Indicator:
        return self._get(self._indicators, indicator_id, "indicator")

    def case_type(self, case_type_id: str) -> CaseType:
        return self._get(self._case_types, case_type_id, "case type")

    def tasks_of_area(self, area_id: str) -> tuple[Task, ...]:
        return tuple(t for t in self.tasks if t.area == area_id)

    # -- who does what -------------------------------------------------------------------------

    def collectives_of(self, code: str) -> frozenset[str]:
        """Codes of the collectives that list `code` as a member, directly or through another
        collective (洪山镇政府 is in 各街镇)."""
        found: set[str] = set()
        frontier = {code}
        while frontier:
            frontier = {c.code for c in self.departments if frontier.intersection(c.members)} - found
            found |= frontier
        return frozenset(found)

    def tasks_of_department(self, code: str) -> tuple[Task, ...]:
        """Tasks the department leads or is responsible for, itself or as a named member of a
        collective (洪山镇政府 through 各街镇). Open collectives (各相关部门) do not count here."""
        self.department(code)
        acting_as = {code, *self.collectives_of(code)}
        return tuple(t for t in self.tasks if acting_as.intersection(t.departments))

    def may_report_task(self, code: str, task_id: str) -> bool:
        """Whether the department may post progress on the task: it is one of the task's units, or
        the task names an open collective (各相关部门) and the department is a unit."""
        task = self.task(task_id)
        if any(t.id == task_id for t in self.tasks_of_department(code)):
            return True
        return self.department(code).kind == "unit" and any(
            self.department(c).open_membership for c in task.departments
        )

    # -- indicators and case types -------------------------------------------------------------

    @property
    def case_types(self) -> frozenset[str]:
        return frozenset(self._case_types)

    def indicators_for_case_type(self, case_type: str) -> tuple[Indicator, ...]:
        self.case_type(case_type)
        return tuple(i for i in self.indicators if i.feed.case_type == case_type)

    def case_type_departments(self, case_type: str) -> frozenset[str]:
        """Departments that may send events for cases of this type."""
        return frozenset(d for i in self.indicators_for_case_type(case_type) for d in i.feed.departments)

    def feeds(self, code: str) -> frozenset[str]:
        """What the department may send: case-type ids for case events, indicator ids for reports."""
        self.department(code)
        return frozenset(
            i.feed.case_type if i.feed.kind == "case" else i.id for i in self.indicators if code in i.feed.departments
        )
