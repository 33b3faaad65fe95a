import os
import subprocess
import sys
from pathlib import Path

from . import FICTIONAL_2027, write_calendar_file

REPO = Path(__file__).resolve().parents[2]


def duban(*args: str, contracts_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("DUBAN_CONTRACTS_DIR", None)
    if contracts_dir is not None:
        env["DUBAN_CONTRACTS_DIR"] = str(contracts_dir)
    return subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def test_coverage_lists_each_year_and_its_source():
    result = duban("calendar", "coverage")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "2004  chinesecalendar 1.11.0"
    assert "2026  chinesecalendar 1.11.0" in lines
    assert lines[-3].startswith("2027  provisional: statutory holidays of 全国年节及纪念日放假办法 (2024)")
    assert lines[-2].startswith("2028  provisional")
    assert lines[-1] == "calendar data version: chinesecalendar 1.11.0+provisional.2027.2028"


def test_coverage_fails_when_a_required_year_is_missing():
    result = duban("calendar", "coverage", "--require", "2021", "--require", "2027")
    assert result.returncode == 1
    assert "no working-day data for 2027" in result.stderr and "(only provisional)" in result.stderr
    assert "2021" not in result.stderr


def test_coverage_passes_once_the_year_has_an_extension_file(tmp_path):
    write_calendar_file(tmp_path, FICTIONAL_2027)
    result = duban("calendar", "coverage", "--require", "2027", contracts_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2027  2027.yaml  fictional test data" in result.stdout.splitlines()


def test_an_invalid_extension_file_is_reported_by_name(tmp_path):
    path = write_calendar_file(tmp_path, {**FICTIONAL_2027, "year": 2028}, name="2027.yaml")
    result = duban("calendar", "coverage", contracts_dir=tmp_path)
    assert result.returncode == 1
    assert f"{path}: states year 2028" in result.stderr


def test_days_follows_the_counting_rule():
    result = duban("calendar", "days", "2021-09-16", "2021-09-22")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["working days: 3", "calendar days: 6"]
    assert duban("calendar", "days", "2021-09-30", "2021-10-08").stdout.splitlines() == [
        "working days: 1",
        "calendar days: 8",
    ]


def test_days_in_an_uncovered_year_fail_clearly():
    result = duban("calendar", "days", "2028-12-30", "2029-01-04")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "no working-day data for 2029" in result.stderr


def test_days_in_a_provisional_year_say_so():
    result = duban("calendar", "days", "2026-12-31", "2027-01-05")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["working days: 2", "calendar days: 5"]
    assert lines[2].startswith("provisional: 2027 derived from the statutory holidays")
    assert duban("calendar", "days", "2027-06-08", "2027-06-10").stdout.splitlines()[0] == "working days: 1"
    assert "provisional" not in duban("calendar", "days", "2026-06-18", "2026-06-22").stdout


def test_days_with_the_official_year_are_not_provisional(tmp_path):
    write_calendar_file(tmp_path, FICTIONAL_2027)
    result = duban("calendar", "days", "2026-12-31", "2027-01-05", contracts_dir=tmp_path)
    assert result.stdout.splitlines() == ["working days: 2", "calendar days: 5"]


def test_days_rejects_a_malformed_date():
    result = duban("calendar", "days", "2021-09-31", "2021-10-08")
    assert result.returncode == 2
    assert "expected a date as YYYY-MM-DD, got '2021-09-31'" in result.stderr
