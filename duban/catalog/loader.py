"""Loads the reviewed plan files (contracts/plan/*.yaml) into a `Catalog` and checks them whole.

Every problem found is collected and reported at once, so a reviewer fixing the data sees the
full list rather than one error per run.
"""

from __future__ import annotations

import calendar
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from duban.catalog.models import Area, CaseType, Catalog, Department, Indicator, Plan, Task, normalize_name

CONTRACTS_DIR_ENV = "DUBAN_CONTRACTS_DIR"
TASK_IDS = tuple(f"T{n:02d}" for n in range(1, 29))
AREA_IDS = tuple(f"A{n}" for n in range(1, 9))

# "2021年3月底前", "2021年底前", "2021 年底": a year, an optional month, then 底 (end of).
_DUE_PHRASE = re.compile(r"([0-9]{4})\s*年\s*(?:([0-9]{1,2})\s*月\s*)?底")

# file name -> the top-level keys it must hold
_FILES = {
    "areas.yaml": ("areas",),
    "departments.yaml": ("departments",),
    "tasks.yaml": ("plan", "tasks"),
    "indicators.yaml": ("case_types", "indicators"),
}

M = TypeVar("M", bound=BaseModel)


class CatalogError(ValueError):
    """The plan files are missing, malformed or inconsistent; `problems` lists every finding."""

    def __init__(self, directory: Path, problems: Iterable[str]) -> None:
        self.directory = directory
        self.problems = tuple(problems)
        listing = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid plan catalog in {directory} ({len(self.problems)} problems):\n{listing}")


def parse_due_phrases(text: str) -> list[date]:
    """Due dates written in plan text, in order: "2021年6月底前" -> 2021-06-30, "2021 年底" -> 2021-12-31."""
    dates = []
    for match in _DUE_PHRASE.finditer(text):
        year, month = int(match[1]), int(match[2] or 12)
        dates.append(date(year, month, calendar.monthrange(year, month)[1]))
    return dates


def default_directory() -> Path:
    """contracts/plan of this checkout, or under $DUBAN_CONTRACTS_DIR when set."""
    contracts = os.environ.get(CONTRACTS_DIR_ENV)
    root = Path(contracts) if contracts else Path(__file__).resolve().parents[2] / "contracts"
    return root / "plan"


def load_catalog(directory: Path | None = None) -> Catalog:
    """Load and check the catalog in `directory` (default: `default_directory()`, loaded once per process)."""
    if directory is None:
        return _load_default(default_directory().resolve())
    return _Loader(Path(directory)).load()


@lru_cache(maxsize=None)
def _load_default(directory: Path) -> Catalog:
    return _Loader(directory).load()


class _Loader:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.problems: list[str] = []

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def load(self) -> Catalog:
        raw = {name: self._read(name, keys) for name, keys in _FILES.items()}
        if self.problems:  # without every file there is nothing sound to cross-check
            raise CatalogError(self.directory, self.problems)

        plan = self._parse(Plan, raw["tasks.yaml"]["plan"], "tasks.yaml plan")
        areas = self._parse_all(Area, raw["areas.yaml"], "areas.yaml", "areas", "id")
        departments = self._parse_all(Department, raw["departments.yaml"], "departments.yaml", "departments", "code")
        codes_by_name = self._name_index(departments)
        tasks = self._parse_all(
            Task, raw["tasks.yaml"], "tasks.yaml", "tasks", "id", lambda t: self._resolve_departments(t, codes_by_name)
        )
        case_types = self._parse_all(CaseType, raw["indicators.yaml"], "indicators.yaml", "case_types", "id")
        indicators = self._parse_all(Indicator, raw["indicators.yaml"], "indicators.yaml", "indicators", "id")
        if plan is None:  # the cross-checks need the plan year and goals
            raise CatalogError(self.directory, self.problems)

        catalog = Catalog(
            plan=plan,
            areas=tuple(areas),
            tasks=tuple(tasks),
            departments=tuple(departments),
            indicators=tuple(indicators),
            case_type_defs=tuple(case_types),
        )
        self._check(catalog)
        if self.problems:
            raise CatalogError(self.directory, self.problems)
        return catalog

    # -- reading -------------------------------------------------------------------------------

    def _read(self, name: str, keys: tuple[str, ...]) -> dict[str, Any]:
        path = self.directory / name
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, yaml.YAMLError) as exc:  # ValueError: a date like 2021-02-30
            self.problem(f"{name}: cannot read: {exc}")
            return {}
        if not isinstance(data, dict) or set(data) != set(keys):
            self.problem(f"{name}: top level must be a mapping with exactly the keys {', '.join(keys)}")
            return {}
        return data

    def _parse(self, model: type[M], data: Any, where: str) -> M | None:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors():
                loc = ".".join(map(str, error["loc"]))
                field = f"{loc}: " if loc else ""
                # A record's own checks raise ValueError; show their words without pydantic's prefix.
                message = str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]
                self.problem(f"{where}: {field}{message}")
            return None

    def _parse_all(
        self,
        model: type[M],
        data: dict[str, Any],
        file: str,
        list_key: str,
        key: str,
        prepare: Callable[[Any], Any] | None = None,
    ) -> list[M]:
        """Parse the records listed under `list_key`, each on its own so one bad record does not
        hide the problems of the others; `key` labels records in messages and must be unique."""
        items = data[list_key]
        if not isinstance(items, list):
            self.problem(f"{file}: {list_key} must be a list")
            return []
        parsed = []
        for position, item in enumerate(items, start=1):
            label = item.get(key) if isinstance(item, dict) else None
            record = self._parse(model, prepare(item) if prepare else item, f"{file} {label or f'item {position}'}")
            if record is not None:
                parsed.append(record)
        for duplicate in _duplicates(getattr(r, key) for r in parsed):
            self.problem(f"{file}: {key} {duplicate} is used more than once")
        return parsed

    def _name_index(self, departments: list[Department]) -> dict[str, str]:
        index: dict[str, str] = {}
        for department in departments:
            for name in department.names:
                owner = index.setdefault(normalize_name(name), department.code)
                if owner != department.code:
                    self.problem(f"departments.yaml: name {name} belongs to both {owner} and {department.code}")
        return index

    def _resolve_departments(self, task: Any, codes_by_name: dict[str, str]) -> Any:
        """tasks.yaml names departments as the plan does; the Task record holds their codes."""
        if not isinstance(task, dict):
            return task
        resolved = dict(task)
        for role in ("lead", "responsible"):
            names = task.get(role)
            if not isinstance(names, list):
                continue
            codes = []
            for name in names:
                code = codes_by_name.get(normalize_name(str(name)))
                if code is None:
                    self.problem(f"tasks.yaml {task.get('id')}: {role}: unknown department {name}")
                else:
                    codes.append(code)
            resolved[role] = codes
        return resolved

    # -- cross-checks --------------------------------------------------------------------------

    def _check(self, catalog: Catalog) -> None:
        self._check_ids(catalog)
        self._check_departments(catalog)
        self._check_tasks(catalog)
        self._check_indicators(catalog)

    def _check_ids(self, catalog: Catalog) -> None:
        for what, found, expected in (
            ("area", [a.id for a in catalog.areas], AREA_IDS),
            ("task", [t.id for t in catalog.tasks], TASK_IDS),
        ):
            missing = sorted(set(expected) - set(found))
            extra = sorted(set(found) - set(expected))
            if missing or extra or len(found) != len(expected):
                self.problem(
                    f"the plan has exactly {len(expected)} {what}s {expected[0]}..{expected[-1]};"
                    f" found {len(found)}, missing {missing or 'none'}, unexpected {extra or 'none'}"
                )
        milestone_ids = [m.id for t in catalog.tasks for m in t.milestones]
        for duplicate in _duplicates(milestone_ids):
            self.problem(f"tasks.yaml: milestone id {duplicate} is used more than once")
        clashes = catalog.case_types & {i.id for i in catalog.indicators}
        for clash in sorted(clashes):  # feeds() mixes both kinds of id
            self.problem(f"indicators.yaml: {clash} is both a case type and an indicator id")

    def _check_departments(self, catalog: Catalog) -> None:
        codes = {d.code for d in catalog.departments}
        if catalog.plan.issuer not in codes:
            self.problem(f"tasks.yaml plan: issuer {catalog.plan.issuer} is not a department")
        for department in catalog.departments:
            for member in department.members:
                if member not in codes:
                    self.problem(f"departments.yaml {department.code}: unknown member {member}")
            if department.code in catalog.collectives_of(department.code):
                self.problem(f"departments.yaml {department.code}: is a member of itself")
        named = {c for t in catalog.tasks for c in t.departments}
        named |= {c for i in catalog.indicators for c in i.feed.departments}
        for department in catalog.departments:
            if department.note or department.code in named or catalog.collectives_of(department.code) & named:
                continue
            self.problem(f"departments.yaml {department.code}: no task names it and no note says why it is listed")

    def _check_tasks(self, catalog: Catalog) -> None:
        area_ids = {a.id for a in catalog.areas}
        year_end = catalog.plan.year_end
        for task in catalog.tasks:
            if task.area not in area_ids:
                self.problem(f"tasks.yaml {task.id}: unknown area {task.area}")
            for milestone in task.milestones:
                where = f"tasks.yaml {milestone.id}"
                if not milestone.id.startswith(f"{task.id}-"):
                    self.problem(f"{where}: belongs to {task.id}, so its id must start with {task.id}-")
                if milestone.source_text is not None and milestone.source_text not in task.measures:
                    self.problem(f"{where}: source_text is not in the task's measures")
                if milestone.stated:
                    if milestone.due not in parse_due_phrases(milestone.source_text or ""):
                        self.problem(f"{where}: stated due {milestone.due} is not written in its source_text")
                elif milestone.due != year_end:
                    self.problem(f"{where}: a due date the plan does not state is the plan-year end {year_end}")

    def _check_indicators(self, catalog: Catalog) -> None:
        task_ids = {t.id for t in catalog.tasks}
        codes = {d.code for d in catalog.departments}
        plan = catalog.plan
        for indicator in catalog.indicators:
            where = f"indicators.yaml {indicator.id}"
            if indicator.task not in task_ids:
                self.problem(f"{where}: unknown task {indicator.task}")
            elif not any(indicator.source_text in text for text in (catalog.task(indicator.task).measures, plan.goals)):
                self.problem(f"{where}: source_text is neither in the task's measures nor in the plan's goals")
            for code in indicator.feed.departments:
                if code not in codes:
                    self.problem(f"{where}: feed names unknown department {code}")
            written = parse_due_phrases(indicator.source_text)
            if indicator.deadline not in (written or [plan.year_end]):
                expected = " or ".join(map(str, written)) if written else f"the plan-year end {plan.year_end}"
                self.problem(f"{where}: deadline {indicator.deadline} should be {expected}")
            if indicator.feed.case_type is not None and indicator.feed.case_type not in catalog.case_types:
                self.problem(f"{where}: unknown case type {indicator.feed.case_type}")
        used = {i.feed.case_type for i in catalog.indicators}
        for unused in sorted(catalog.case_types - used):
            self.problem(f"indicators.yaml: case type {unused} feeds no indicator")


def _duplicates(values: Iterable[str]) -> list[str]:
    return sorted(value for value, count in Counter(values).items() if count > 1)
