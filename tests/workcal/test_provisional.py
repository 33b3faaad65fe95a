"""Provisional years checked against history: the rules, applied to 2015–2026, against the official
schedules the package holds. Each year is generated with the version of the law in force in it."""

from datetime import date, timedelta

import chinese_calendar
import pytest

from duban.workcal.calendar import PACKAGE_YEARS, provisional_rest_days
from duban.workcal.provisional import rule_set_for, statutory_holidays

HISTORY = range(2015, 2027)


def _year(year: int) -> list[date]:
    return [date(year, 1, 1) + timedelta(days=i) for i in range((date(year + 1, 1, 1) - date(year, 1, 1)).days)]


def _official_rest_day(day: date) -> bool:
    # The package's tables directly (chinese_calendar.is_workday is the same rule, much slower per day).
    return day in chinese_calendar.holidays or (day.weekday() >= 5 and day not in chinese_calendar.workdays)


def _provisional_rest_day(day: date, rest_days: set[date]) -> bool:
    return day.weekday() >= 5 or day in rest_days


def test_the_package_covers_the_years_checked():
    assert set(HISTORY) <= set(PACKAGE_YEARS)


@pytest.mark.parametrize("year", HISTORY)
def test_every_statutory_day_is_an_official_rest_day(year):
    wrong = {name: [str(day) for day in days if not _official_rest_day(day)]
             for name, days in statutory_holidays(year).items()}
    assert not any(wrong.values()), f"{year} ({rule_set_for(year).name}): {wrong}"


def test_only_the_notices_adjustments_differ(capsys):
    """The days the provisional calendar gets wrong are 调休 weekends worked and days off the notice
    added (补假 and the joined breaks); never a statutory day. The per-year counts are printed even
    under output capture."""
    lines = []
    for year in HISTORY:
        rest = provisional_rest_days(year)
        differ = [day for day in _year(year) if _official_rest_day(day) != _provisional_rest_day(day, rest)]
        statutory_wrong = [day for day in differ if day in rest]
        worked_weekends = [day for day in differ if day.weekday() >= 5]
        added_days_off = [day for day in differ if day.weekday() < 5 and day not in rest]
        assert not statutory_wrong, year
        assert len(worked_weekends) + len(added_days_off) == len(differ)
        assert all(day in chinese_calendar.workdays for day in worked_weekends), year
        assert all(day in chinese_calendar.holidays for day in added_days_off), year
        lines.append(f"{year}: {len(differ)} days differ ({len(worked_weekends)} 调休 weekends worked,"
                     f" {len(added_days_off)} weekdays off by the notice) under {rule_set_for(year).name}")
    with capsys.disabled():
        print("\nprovisional vs official calendar:", *lines, sep="\n")


def test_the_2024_amendment_governs_from_2025():
    assert rule_set_for(2024).name.endswith("(2013)") and rule_set_for(2025).name.endswith("(2024)")
    assert statutory_holidays(2027)["春节"] == [date(2027, 2, 5) + timedelta(days=i) for i in range(4)]
    assert statutory_holidays(2024)["春节"] == [date(2024, 2, 10) + timedelta(days=i) for i in range(3)]
    assert statutory_holidays(2027)["劳动节"] == [date(2027, 5, 1), date(2027, 5, 2)]
    with pytest.raises(ValueError, match="2014 on"):
        rule_set_for(2013)


def test_the_2024_rules_would_misplace_chuxi_before_2025():
    """Why each year takes its own version: under the 2024 rules 除夕 was often a working day."""
    worked = [year for year in range(2015, 2025) if not _official_rest_day(_lunar_eve(year))]
    assert 2024 in worked  # 除夕 Fri 2024-02-09 was a working day: the 2013 rules gave it no day off


def _lunar_eve(year: int) -> date:
    return statutory_holidays(year)["春节"][0] - timedelta(days=1)


def test_each_holiday_by_name_under_each_version_of_the_law():
    d = date
    assert statutory_holidays(2014) == {
        "元旦": [d(2014, 1, 1)], "春节": [d(2014, 1, 31), d(2014, 2, 1), d(2014, 2, 2)], "清明": [d(2014, 4, 5)],
        "劳动节": [d(2014, 5, 1)], "端午": [d(2014, 6, 2)], "中秋": [d(2014, 9, 8)],
        "国庆": [d(2014, 10, 1), d(2014, 10, 2), d(2014, 10, 3)]}
    assert statutory_holidays(2027) == {
        "元旦": [d(2027, 1, 1)], "春节": [d(2027, 2, 5), d(2027, 2, 6), d(2027, 2, 7), d(2027, 2, 8)],
        "清明": [d(2027, 4, 5)], "劳动节": [d(2027, 5, 1), d(2027, 5, 2)], "端午": [d(2027, 6, 9)],
        "中秋": [d(2027, 9, 15)], "国庆": [d(2027, 10, 1), d(2027, 10, 2), d(2027, 10, 3)]}
