"""`duban catalog`, run as the installed command in a separate process."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import unicodedata
from pathlib import Path

from duban.catalog import load_catalog

PLAN_DIR = Path(__file__).resolve().parents[2] / "contracts" / "plan"


def _duban(*args: str, cwd: Path, contracts: Path | None = None) -> subprocess.CompletedProcess[str]:
    # The command installed next to this interpreter, else one on PATH, else the module itself.
    executable = shutil.which("duban", path=sysconfig.get_path("scripts")) or shutil.which("duban")
    command = [executable] if executable else [sys.executable, "-m", "entrypoints.cli"]
    env = {k: v for k, v in os.environ.items() if k != "DUBAN_CONTRACTS_DIR"}
    if contracts is not None:
        env["DUBAN_CONTRACTS_DIR"] = str(contracts)
    return subprocess.run(
        [*command, "catalog", *args], cwd=cwd, env=env, capture_output=True, text=True, encoding="utf-8", timeout=60
    )


def test_json_output_is_the_whole_catalog(tmp_path: Path) -> None:
    result = _duban("--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "\\u" not in result.stdout  # Chinese printed as is (ensure_ascii=False)
    data = json.loads(result.stdout)
    assert {"areas", "tasks", "departments", "indicators"} <= set(data)
    assert len(data["areas"]) == 8
    assert len(data["tasks"]) == 28
    for task in data["tasks"]:
        assert {"id", "area", "title", "lead", "responsible", "kind", "milestones"} <= set(task)
        for milestone in task["milestones"]:
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", milestone["due"])
    t17 = next(t for t in data["tasks"] if t["id"] == "T17")
    assert (t17["area"], t17["lead"], t17["responsible"]) == ("A6", ["digital-office"], ["industry-it", "health"])
    t02 = next(t for t in data["tasks"] if t["id"] == "T02")
    assert [m["due"] for m in t02["milestones"]] == ["2021-03-31", "2021-12-31", "2021-12-31"]
    assert data["areas"][7]["name"] == "优化社会基础服务水平"
    assert {d["code"]: d["name"] for d in data["departments"]}["digital-office"] == "区数字办"
    bankruptcy = next(i for i in data["indicators"] if i["id"] == "simple_bankruptcy_days")
    assert (bankruptcy["target"], bankruptcy["unit"], bankruptcy["deadline"]) == (180, "calendar_days", "2021-12-31")
    assert {c["id"] for c in data["case_types"]} == load_catalog().case_types


def _display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def test_tables_show_chinese_names_aligned(tmp_path: Path) -> None:
    result = _duban(cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for heading in ("Areas (8)", "Tasks (28)", "Departments (37)", "Indicators (15)"):
        assert heading in out
    assert "T17" in out and "区数字办" in out and "优化社会基础服务水平" in out
    assert "≤ 180" in out and "≥ 50%" in out and "≤ 3 (aiming for 2)" in out

    # In the task table the lead column starts at the same display column on every row.
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("id   area  title"))
    lead_column = _display_width(header[: header.index("lead")])
    catalog = load_catalog()
    for task in catalog.tasks:
        row = next(line for line in lines if line.startswith(f"{task.id}  "))
        first_lead = catalog.department(task.lead[0]).name
        assert _display_width(row[: row.index(first_lead, len(task.id) + len(task.title))]) == lead_column, row


def test_a_broken_catalog_fails_with_the_problems(tmp_path: Path) -> None:
    shutil.copytree(PLAN_DIR, tmp_path / "plan")
    tasks = tmp_path / "plan" / "tasks.yaml"
    tasks.write_text(tasks.read_text(encoding="utf-8").replace("lead: [区数字办]", "lead: [区数码办]"), encoding="utf-8")
    result = _duban(cwd=tmp_path, contracts=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "invalid plan catalog" in result.stderr
    assert "T17: lead: unknown department 区数码办" in result.stderr
