"""The tables the board exports: the task ledger (台账) and the indicator table, as header and rows of
plain values, so XLSX and CSV carry the same columns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from duban.catalog import Catalog
from services.board.domain.views import LIGHT_NAMES, STATUS_NAMES, department_names

SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Table:
    title: str
    header: tuple[str, ...]
    rows: list[tuple]


def civil(instant: str | None) -> str:
    """An API instant as Beijing time, to the minute."""
    if not instant:
        return ""
    return datetime.fromisoformat(instant).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def ledger(catalog: Catalog, tasks: list[dict]) -> Table:
    rows = []
    for task in sorted(tasks, key=lambda t: t["id"]):
        rows.append((task["id"], catalog.area(task["area"]).name, task["title"],
                     "、".join(department_names(catalog, task["lead"])),
                     "、".join(department_names(catalog, task["responsible"])),
                     STATUS_NAMES.get(task["status"], task["status"]), task["percent"], LIGHT_NAMES[task["light"]],
                     task["next_due"] or "", civil(task["last_report_at"]), task["last_note"] or ""))
    return Table("督办任务台账", ("任务编号", "领域", "任务", "牵头部门", "责任单位", "状态", "进度(%)", "亮灯",
                             "下一期限", "最近报告时间", "最近报告"), rows)


def indicator_table(indicators: dict) -> Table:
    """The plan-wide figure of every indicator for the period the metrics service answered for."""
    rows = []
    for item in indicators["items"]:
        target = item["target"] if item["target_max"] is None else f"{item['target']}–{item['target_max']}"
        rows.append((item["indicator"], item["name"], item["task"], indicators["period"],
                     "" if item["value"] is None else item["value"], item["unit"], _comparison(item["comparison"]),
                     target, item["samples"], item["open_cases"],
                     "" if item["forecast"] is None else item["forecast"],
                     LIGHT_NAMES.get(item["light"], "未计量"), _met(item["compliant"])))
    return Table(f"指标完成情况（{indicators['period']}）",
                 ("指标编号", "指标", "任务", "期间", "数值", "单位", "比较", "目标", "样本数", "在办件", "预测",
                  "亮灯", "达标"), rows)


def _comparison(code: str) -> str:
    return {"le": "≤", "ge": "≥", "between": "区间", "approx": "约"}[code]


def _met(compliant: bool | None) -> str:
    return "未计量" if compliant is None else ("是" if compliant else "否")
