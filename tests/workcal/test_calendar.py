from datetime import date, datetime, timedelta
from pathlib import Path

import chinese_calendar
import pytest
from hypothesis import given
from hypothesis import strategies as st

from duban.workcal import (
    CalendarCoverageError,
    CalendarDataError,
    WorkingCalendar,
    YearCoverage,
    load_calendar_file,
)

from . import FICTIONAL_2027, FICTIONAL_2030, write_calendar_file


@pytest.fixture(scope="module")
def calendar() -> WorkingCalendar:
    return WorkingCalendar()


@pytest.fixture(scope="module")
def package_calendar(tmp_path_factory) -> WorkingCalendar:
    """The package data alone, for comparisons with chinese_calendar itself."""
    return WorkingCalendar(tmp_path_factory.mktemp("empty"))


@pytest.fixture(scope="module")
def official_calendar() -> WorkingCalendar:
    """No provisional years: only what the package and the files say."""
    return WorkingCalendar(provisional_years=0)


def _span(first: str, last: str) -> list[date]:
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


# sla-anchors.md §3.3, from the State Council notice for 2021.
HOLIDAYS_2021 = {
    "New Year": _span("2021-01-01", "2021-01-03"),
    "Spring Festival": _span("2021-02-11", "2021-02-17"),
    "Qingming": _span("2021-04-03", "2021-04-05"),
    "Labour Day": _span("2021-05-01", "2021-05-05"),
    "Dragon Boat": _span("2021-06-12", "2021-06-14"),
    "Mid-Autumn": _span("2021-09-19", "2021-09-21"),
    "National Day": _span("2021-10-01", "2021-10-07"),
}
ADJUSTED_WORKDAYS_2021 = [
    "2021-02-07", "2021-02-20", "2021-04-25", "2021-05-08", "2021-09-18", "2021-09-26", "2021-10-09",
]


@pytest.mark.parametrize("name", HOLIDAYS_2021)
def test_2021_holidays_are_days_off(calendar, name):
    assert [day for day in HOLIDAYS_2021[name] if calendar.is_workday(day)] == []


@pytest.mark.parametrize("day", ADJUSTED_WORKDAYS_2021)
def test_2021_adjusted_weekend_days_are_worked(calendar, day):
    day = date.fromisoformat(day)
    assert day.weekday() >= 5
    assert calendar.is_workday(day)


def test_ordinary_weeks_are_monday_to_friday(calendar):
    week = _span("2021-11-01", "2021-11-07")
    assert [calendar.is_workday(day) for day in week] == [True] * 5 + [False] * 2


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2021-09-30", "2021-10-08", 1),  # across National Day
        ("2021-09-16", "2021-09-22", 3),  # Fri 17, Sat 18 (调休), Wed 22; naive Mon–Fri gives 4
        ("2021-02-05", "2021-02-08", 2),  # Sun 02-07 is worked
        ("2021-02-10", "2021-02-18", 1),  # Spring Festival 02-11…02-17 off
        ("2021-02-10", "2021-02-20", 3),  # … then Thu 18, Fri 19, Sat 20 (调休)
        ("2021-12-31", "2022-01-04", 1),  # New Year 2022 (01-01…01-03) across the year boundary
        ("2021-09-16", "2021-09-16", 0),  # the start day is never counted
        ("2021-09-22", "2021-09-16", 0),  # end before start
    ],
)
def test_working_days_between_does_not_count_the_start_day(calendar, start, end, expected):
    assert calendar.working_days_between(date.fromisoformat(start), date.fromisoformat(end)) == expected


@pytest.mark.parametrize(
    ("start", "n", "deadline"),
    [
        ("2021-09-30", 1, "2021-10-08"),
        ("2021-09-16", 2, "2021-09-18"),  # the 调休 Saturday is a working day
        ("2021-09-16", 3, "2021-09-22"),
        ("2021-09-18", 0, "2021-09-18"),
        ("2021-12-30", 2, "2022-01-04"),
    ],
)
def test_add_working_days_gives_the_deadline(calendar, start, n, deadline):
    assert calendar.add_working_days(date.fromisoformat(start), n) == date.fromisoformat(deadline)


def test_add_working_days_rejects_negative_counts(calendar):
    with pytest.raises(ValueError, match="n must be >= 0"):
        calendar.add_working_days(date(2021, 9, 16), -1)


def test_the_package_years_are_covered_and_the_next_two_are_provisional(calendar):
    assert calendar.covered_years() == list(range(2004, 2027))
    report = calendar.coverage_report()
    assert {entry.origin for entry in report if not entry.provisional} == {"chinesecalendar 1.11.0"}
    assert [entry.year for entry in report if entry.provisional] == [2027, 2028]
    assert not calendar.is_covered(2027) and calendar.is_provisional(2027)
    assert not any(calendar.is_provisional(year) for year in calendar.covered_years())
    assert calendar.version == "chinesecalendar 1.11.0+provisional.2027.2028"


def test_a_provisional_year_has_the_statutory_holidays_and_nothing_guessed(calendar):
    # 元旦 Fri 2027-01-01: Mon 4 and Tue 5 are counted.
    assert calendar.working_days_between(date(2026, 12, 31), date(2027, 1, 5)) == 2
    assert calendar.working_days_between(date(2027, 6, 8), date(2027, 6, 10)) == 1  # 端午 Wed 06-09
    # 除夕 Fri 02-05 to 初三 Mon 02-08; the 补假 for Sat 初一 and Sun 初二 is the notice's to name.
    assert [calendar.is_workday(date(2027, 2, d)) for d in range(4, 10)] == [True, False, False, False, False, True]
    assert not calendar.is_workday(date(2027, 4, 5)) and not calendar.is_workday(date(2027, 9, 15))
    assert calendar.is_workday(date(2027, 10, 4))  # 国庆 is 1–3 Oct by law; the longer break is the notice's
    assert calendar.touches_provisional(date(2026, 12, 31), date(2027, 1, 5))
    assert not calendar.touches_provisional(date(2026, 1, 1), date(2026, 12, 31))


def test_years_past_the_provisional_ones_raise(calendar):
    with pytest.raises(CalendarCoverageError) as raised:
        calendar.is_workday(date(2029, 1, 4))
    assert raised.value.year == 2029


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.is_workday(date(2027, 1, 4)),
        lambda c: c.working_days_between(date(2026, 12, 30), date(2027, 1, 4)),
        lambda c: c.working_days_between(date(2027, 1, 4), date(2027, 1, 1)),
        lambda c: c.add_working_days(date(2026, 12, 30), 5),
    ],
)
def test_an_uncovered_year_raises_instead_of_guessing_mon_to_fri(official_calendar, call):
    with pytest.raises(CalendarCoverageError) as raised:
        call(official_calendar)
    assert raised.value.year == 2027
    assert isinstance(raised.value, LookupError)
    assert "contracts/calendar/2027.yaml" in str(raised.value)


def test_datetimes_are_refused_because_their_civil_date_depends_on_the_zone(calendar):
    with pytest.raises(TypeError, match="Asia/Shanghai"):
        calendar.is_workday(datetime(2021, 9, 18, 20, 0))


def test_an_extension_file_covers_an_uncovered_year_with_its_adjusted_days(tmp_path):
    path = write_calendar_file(tmp_path, FICTIONAL_2030)
    calendar = WorkingCalendar(path.parent)

    assert calendar.is_covered(2030)
    assert not calendar.is_workday(date(2030, 2, 4))  # a Monday inside the fictional Spring Festival
    assert calendar.is_workday(date(2030, 1, 27))  # Sunday worked
    assert calendar.is_workday(date(2030, 2, 11))  # an ordinary Monday
    assert calendar.working_days_between(date(2030, 2, 1), date(2030, 2, 11)) == 2  # Sat 02-09 and Mon 02-11
    assert calendar.add_working_days(date(2030, 2, 1), 1) == date(2030, 2, 9)
    entry = next(entry for entry in calendar.coverage_report() if entry.year == 2030)
    assert entry == YearCoverage(2030, "2030.yaml", "fictional test data", overrides_package=False,
                                 checksum=entry.checksum)
    assert calendar.version.startswith("chinesecalendar 1.11.0+files.")
    # The years between the package's and the file's are provisional, and so are the two after it.
    assert calendar.provisional_years == (2027, 2028, 2029, 2031, 2032)


def test_spans_across_a_gap_in_coverage_name_the_missing_year(tmp_path):
    calendar = WorkingCalendar(write_calendar_file(tmp_path, FICTIONAL_2030).parent, provisional_years=0)
    with pytest.raises(CalendarCoverageError) as raised:
        calendar.working_days_between(date(2026, 12, 30), date(2030, 1, 2))
    assert raised.value.year == 2027


def test_an_extension_file_for_the_next_year_joins_the_package_years(tmp_path):
    calendar = WorkingCalendar(write_calendar_file(tmp_path, FICTIONAL_2027).parent)
    # Thu 2026-12-31 → Sat 2027-01-09: Mon 4 … Fri 8 and the 调休 Saturday.
    assert calendar.working_days_between(date(2026, 12, 31), date(2027, 1, 9)) == 6
    assert calendar.add_working_days(date(2026, 12, 30), 2) == date(2027, 1, 4)


def test_an_extension_file_replaces_the_package_data_for_its_year(tmp_path):
    correction = {
        "year": 2021,
        "source": "fictional correction",
        "holidays": [{"name": "国庆节", "from": "2021-10-01", "to": "2021-10-07"}],
        "workdays": [{"name": "国庆节", "date": "2021-09-26"}],
    }
    calendar = WorkingCalendar(write_calendar_file(tmp_path, correction).parent)
    assert calendar.is_workday(date(2021, 9, 26))
    assert not calendar.is_workday(date(2021, 10, 9))  # no longer listed, so an ordinary Saturday
    assert calendar.is_workday(date(2021, 2, 11))  # the whole year comes from the file
    assert next(e for e in calendar.coverage_report() if e.year == 2021).overrides_package


def test_the_contracts_directory_can_be_set_by_environment(tmp_path, monkeypatch):
    write_calendar_file(tmp_path, FICTIONAL_2030)
    monkeypatch.setenv("DUBAN_CONTRACTS_DIR", str(tmp_path))
    assert WorkingCalendar().is_covered(2030)


def test_the_calendar_directory_and_provisional_years_can_be_set_by_environment(tmp_path, monkeypatch):
    directory = write_calendar_file(tmp_path, FICTIONAL_2027).parent
    monkeypatch.setenv("DUBAN_CALENDAR_DIR", str(directory))
    monkeypatch.setenv("DUBAN_CALENDAR_PROVISIONAL_YEARS", "1")
    calendar = WorkingCalendar()
    assert calendar.is_covered(2027) and calendar.provisional_years == (2028,)


def test_a_missing_data_directory_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="DUBAN_CONTRACTS_DIR"):
        WorkingCalendar(tmp_path / "nowhere")


def _with(**changes) -> dict:
    return {**FICTIONAL_2030, **changes}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (_with(holidays=[{"name": "元旦", "from": "2029-12-31", "to": "2030-01-01"}]), "outside 2030: 2029-12-31"),
        (_with(workdays=[{"name": "春节", "date": "2031-01-04"}]), "dates outside 2030: 2031-01-04"),
        (_with(workdays=[{"name": "春节", "date": "2030-02-02"}]), "both holiday and working day: 2030-02-02"),
        (_with(workdays=[{"name": "春节", "date": "2030-01-28"}]), "2030-01-28 is a Monday"),
        (_with(holidays=[{"name": "春节", "from": "2030-02-08", "to": "2030-02-02"}]), "ends (2030-02-02) before"),
        (_with(holidays=FICTIONAL_2030["holidays"] * 2), "holiday dates listed twice: 2030-01-01"),
        (_with(year=2031), "states year 2031"),
        (_with(source=""), "source\n  String should have at least 1 character"),
        (_with(comment="x"), "comment\n  Extra inputs are not permitted"),
        ({k: v for k, v in FICTIONAL_2030.items() if k != "holidays"}, "holidays\n  Field required"),
        ("year: 2030\nholidays: [\n", "while parsing"),
    ],
)
def test_invalid_extension_files_are_rejected_naming_the_file(tmp_path, content, problem):
    path = write_calendar_file(tmp_path, content, name="2030.yaml")
    with pytest.raises(CalendarDataError) as raised:
        WorkingCalendar(path.parent)
    assert str(raised.value).startswith(f"{path}: ")
    assert problem in str(raised.value)
    assert raised.value.path == path


COVERED = st.dates(min_value=date(2004, 1, 1), max_value=date(2026, 12, 31))


@given(st.lists(COVERED, min_size=3, max_size=3).map(sorted))
def test_working_days_between_is_additive(package_calendar, days):
    a, b, c = days
    count = package_calendar.working_days_between
    assert count(a, c) == count(a, b) + count(b, c)


@given(COVERED, st.integers(min_value=0, max_value=800))
def test_working_days_between_matches_a_day_by_day_count(package_calendar, start, length):
    end = min(start + timedelta(days=length), date(2026, 12, 31))
    brute_force = sum(chinese_calendar.is_workday(day) for day in _span(str(start), str(end))[1:])
    assert package_calendar.working_days_between(start, end) == brute_force


@given(st.dates(min_value=date(2004, 1, 1), max_value=date(2025, 6, 30)), st.integers(min_value=0, max_value=250))
def test_add_working_days_inverts_working_days_between(package_calendar, start, n):
    deadline = package_calendar.add_working_days(start, n)
    assert package_calendar.working_days_between(start, deadline) == n
    if n:  # the earliest such day: a working day, one day sooner is one short
        assert package_calendar.is_workday(deadline)
        assert package_calendar.working_days_between(start, deadline - timedelta(days=1)) == n - 1


@given(st.lists(COVERED, min_size=2, max_size=2).map(sorted))
def test_the_deadline_of_the_elapsed_days_is_never_after_the_end(package_calendar, days):
    start, end = days
    elapsed = package_calendar.working_days_between(start, end)
    assert package_calendar.add_working_days(start, elapsed) <= end


def test_the_format_example_is_a_valid_file_that_agrees_with_the_package(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "contracts" / "calendar" / "README.md").read_text("utf-8")
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    data = load_calendar_file(write_calendar_file(tmp_path, example, name="2026.yaml"))
    assert data.holiday_dates() and data.workday_dates()
    assert not any(chinese_calendar.is_workday(day) for day in data.holiday_dates())
    assert all(chinese_calendar.is_workday(day) for day in data.workday_dates())


# --- the bookkeeping behind the answers ----------------------------------------------------------


def test_the_package_years_are_those_chinesecalendar_has_data_for():
    from duban.workcal.calendar import _package_years

    assert _package_years() == range(2004, 2027)  # chinesecalendar 1.11.0


def test_the_coverage_report_names_each_year_its_origin_and_digest(tmp_path):
    from duban.workcal.calendar import PACKAGE_ORIGIN, YearCoverage, _digest, load_calendar_file

    path = write_calendar_file(tmp_path, FICTIONAL_2027)
    calendar = WorkingCalendar(tmp_path / "calendar", provisional_years=1)
    report = {c.year: c for c in calendar.coverage_report()}
    assert report[2021] == YearCoverage(2021, PACKAGE_ORIGIN, None)
    assert report[2027] == YearCoverage(2027, "2027.yaml", "fictional test data",
                                        checksum=_digest([load_calendar_file(path)]))
    assert (report[2028].year, report[2028].provisional, report[2028].checksum) == (2028, True, None)
    assert sorted(report) == [*range(2004, 2027), 2027, 2028]


def test_a_datetime_is_refused_for_a_civil_date():
    with pytest.raises(TypeError, match="^expected a civil date, got a datetime; convert it to an Asia/Shanghai date"
                                        " first$"):
        WorkingCalendar().working_days_between(datetime(2021, 10, 1, 9), date(2021, 10, 8))


def test_the_gap_named_is_the_first_missing_year_even_when_it_is_the_last_of_the_span(tmp_path):
    bare = WorkingCalendar(tmp_path, provisional_years=0)
    last = max(bare.covered_years())
    with pytest.raises(CalendarCoverageError) as missing:
        bare.working_days_between(date(last, 6, 1), date(last + 1, 6, 1))
    assert missing.value.year == last + 1


def test_adding_working_days_reaches_the_last_day_of_a_year_and_crosses_into_the_next():
    calendar = WorkingCalendar()
    assert calendar.add_working_days(date(2021, 12, 30), 1) == date(2021, 12, 31)
    assert calendar.add_working_days(date(2021, 12, 30), 2) == date(2022, 1, 4)  # 1–3 January 2022 off
    assert calendar.add_working_days(date(2022, 12, 29), 1) == date(2022, 12, 30)  # Sat 31 December is no working day


def test_a_gap_between_two_covered_years_is_named(tmp_path):
    for year in (2028, 2030):
        write_calendar_file(tmp_path, {"year": year, "source": "fictional test data",
                                       "holidays": [{"name": "元旦", "from": f"{year}-01-01", "to": f"{year}-01-01"}]})
    calendar = WorkingCalendar(tmp_path / "calendar", provisional_years=0)
    with pytest.raises(CalendarCoverageError) as missing:
        calendar.working_days_between(date(2028, 6, 1), date(2030, 6, 1))
    assert missing.value.year == 2029


def test_the_version_names_the_files_digest_and_the_provisional_years(tmp_path):
    from duban.workcal import provisional
    from duban.workcal.calendar import PACKAGE_ORIGIN, YearCoverage, _digest, _provisional_years, load_calendar_file

    path = write_calendar_file(tmp_path, FICTIONAL_2027)
    calendar = WorkingCalendar(tmp_path / "calendar", provisional_years=2)
    digest = _digest([load_calendar_file(path)])
    assert len(digest) == 12
    assert calendar.version == f"{PACKAGE_ORIGIN}+files.{digest}+provisional.2028.2029"
    assert calendar.coverage_report()[-1] == YearCoverage(2029, provisional.ORIGIN, "全国年节及纪念日放假办法 (2024)",
                                                          provisional=True)
    assert calendar.provisional_between(date(2028, 1, 1), date(2029, 1, 1)) == (2028, 2029)
    assert _provisional_years({2020, 2022}, 1) == (2021, 2023)


@pytest.mark.parametrize("content, problem", [
    ({"holidays": [{"name": "元旦", "from": "2026-12-31", "to": "2027-01-02"}]},
     "dates outside 2027: 2026-12-31"),
    ({"holidays": [{"name": "元旦", "from": "2028-01-01", "to": "2028-01-02"}]},
     "dates outside 2027: 2028-01-01, 2028-01-02"),
    ({"holidays": [{"name": "元旦", "from": "2027-01-01", "to": "2027-01-02"},
                   {"name": "again", "from": "2027-01-01", "to": "2027-01-02"}]},
     "holiday dates listed twice: 2027-01-01, 2027-01-02"),
    ({"holidays": [], "workdays": [{"name": "a", "date": "2027-01-09"}, {"name": "b", "date": "2027-01-09"},
                                   {"name": "c", "date": "2027-01-10"}, {"name": "d", "date": "2027-01-10"}]},
     "working day dates listed twice: 2027-01-09, 2027-01-10"),
    ({"holidays": [{"name": "元旦", "from": "2027-01-02", "to": "2027-01-03"}],
      "workdays": [{"name": "a", "date": "2027-01-02"}, {"name": "b", "date": "2027-01-03"}]},
     "dates both holiday and working day: 2027-01-02, 2027-01-03"),
])
def test_a_self_contradicting_file_is_refused_with_every_date_named(tmp_path, content, problem):
    from duban.workcal.calendar import CalendarDataError, load_calendar_file

    path = write_calendar_file(tmp_path, {"year": 2027, "source": "fictional test data", **content})
    with pytest.raises(CalendarDataError) as refused:
        load_calendar_file(path)
    assert str(refused.value) == f"{path}: {problem}"
