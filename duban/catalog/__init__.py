"""The plan catalog: 鼓政办〔2021〕18号 as checked data (areas, tasks, milestones, departments,
indicators, case types), loaded from the reviewed files in contracts/plan/."""

from duban.catalog.loader import CatalogError, default_directory, load_catalog, parse_due_phrases
from duban.catalog.models import (
    Area,
    CaseType,
    Catalog,
    Department,
    Feed,
    Indicator,
    Milestone,
    Plan,
    Task,
    normalize_name,
)

__all__ = [
    "Area",
    "CaseType",
    "Catalog",
    "CatalogError",
    "Department",
    "Feed",
    "Indicator",
    "Milestone",
    "Plan",
    "Task",
    "default_directory",
    "load_catalog",
    "normalize_name",
    "parse_due_phrases",
]
