"""`duban catalog`: show the plan catalog as tables, or as JSON for other tools."""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from collections.abc import Sequence

from duban.catalog.loader import CatalogError, load_catalog
from duban.catalog.models import Catalog, Department, Indicator, Milestone

_COMPARISON = {"le": "≤", "ge": "≥", "approx": "≈"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "catalog",
        help="show the plan's areas, tasks, departments and indicators",
        description="Show the plan catalog (contracts/plan) after checking it.",
    )
    parser.add_argument("--json", action="store_true", help="print the whole catalog as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        catalog = load_catalog()
    except CatalogError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(catalog.as_json(), ensure_ascii=False, indent=2))
    else:
        print(render(catalog))
    return 0


def render(catalog: Catalog) -> str:
    """All four tables, one after the other."""
    name = {d.code: d.name for d in catalog.departments}
    areas = _table(
        "Areas",
        ("id", "no.", "name", "aliases", "tasks"),
        [
            (a.id, a.numeral, a.name, "、".join(a.aliases), " ".join(t.id for t in catalog.tasks_of_area(a.id)))
            for a in catalog.areas
        ],
    )
    tasks = _table(
        "Tasks",
        ("id", "area", "title", "lead", "due"),
        [
            (t.id, t.area, t.title, "、".join(name[c] for c in t.lead), _dues(t.milestones))
            for t in catalog.tasks
        ],
    )
    departments = _table(
        "Departments",
        ("code", "name", "kind", "aliases / members"),
        [
            (d.code, d.name, d.kind, _aliases_or_members(d))
            for d in catalog.departments
        ],
    )
    indicators = _table(
        "Indicators",
        ("id", "task", "name", "target", "unit", "of", "deadline", "feed", "sent by"),
        [
            (
                i.id,
                i.task,
                i.name,
                _target(i),
                i.unit,
                i.aggregate,
                i.deadline.isoformat() + (" yearly" if i.recurrence else ""),
                i.feed.case_type or "report",
                ", ".join(i.feed.departments),
            )
            for i in catalog.indicators
        ],
    )
    return "\n".join((areas, tasks, departments, indicators))


def _dues(milestones: Sequence[Milestone]) -> str:
    def due(m: Milestone) -> str:
        if m.recurrence:
            return f"{m.due.isoformat()} {m.recurrence}"
        return m.due.isoformat() + ("" if m.stated else " (plan year)")

    return ", ".join(dict.fromkeys(map(due, milestones)))  # two milestones may share a date


def _aliases_or_members(department: Department) -> str:
    if department.open_membership:
        return "(open)"
    return "、".join(department.aliases) or ", ".join(department.members)


def _target(indicator: Indicator) -> str:
    def number(value: float) -> str:
        return f"{value:.0%}" if indicator.unit == "ratio" else f"{value:g}"

    if indicator.comparison == "between":
        text = f"{number(indicator.target)}–{number(indicator.target_max)}"
    else:
        text = f"{_COMPARISON[indicator.comparison]} {number(indicator.target)}"
    if indicator.aspiration is not None:
        text += f" (aiming for {number(indicator.aspiration)})"
    return text + (" (力争)" if indicator.aspirational else "")


def _width(text: str) -> int:
    """Terminal columns: wide and full-width characters (Chinese) take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(_width(cell) for cell in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell + " " * (w - _width(cell)) for cell, w in zip(cells, widths)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join((f"{title} ({len(rows)})", line(headers), rule, *(line(r) for r in rows), ""))
