import json
from datetime import UTC, date, datetime
from pathlib import Path

import chinese_calendar
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from duban.workcal import SHANGHAI, CalendarCoverageError, OfficeHours, OfficeSchedule, WorkingCalendar
from duban.workcal.schedule import FUJIAN_SCHEDULE


@pytest.fixture(scope="module")
def hours() -> OfficeHours:
    return OfficeHours(WorkingCalendar(), OfficeSchedule.default())


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2021-11-05 16:00", "2021-11-08 10:00", 3.5),  # Fri → Mon, winter: 1.5 + 2
        ("2021-09-24 16:00", "2021-09-27 10:00", 11.0),  # Sun 09-26 is a 调休 workday: 2 + 7 + 2
        ("2021-11-02 11:00", "2021-11-02 15:00", 1.5),  # lunch 12:00–14:30 (winter)
        ("2021-07-06 11:00", "2021-07-06 16:00", 2.0),  # lunch 12:00–15:00 (summer)
        ("2021-11-02 17:00", "2021-11-03 09:00", 1.5),  # evening and night
        ("2021-11-06 09:00", "2021-11-07 17:00", 0.0),  # an ordinary weekend
        ("2021-11-02 12:10", "2021-11-02 14:20", 0.0),  # inside the lunch break
        ("2021-05-31 14:00", "2021-06-01 16:00", 8.0),  # 31 May 14:30–17:30, then 1 Jun 08–12 and 15–16
        ("2021-09-30 14:00", "2021-10-08 18:00", 10.0),  # 30 Sep 15–18, National Day, 8 Oct 08–12 and 14:30–17:30
        ("2021-12-31 17:00", "2022-01-04 09:00", 1.5),  # New Year across the year boundary
        ("2021-11-08 10:00", "2021-11-05 16:00", 0.0),  # end before start
    ],
)
def test_working_hours_between(hours, start, end, expected):
    assert hours.working_hours_between(at(start), at(end)) == pytest.approx(expected)


def test_instants_in_other_zones_are_read_in_asia_shanghai(hours):
    start = datetime(2021, 11, 5, 8, 0, tzinfo=UTC)  # Fri 16:00 in Fuzhou
    end = datetime(2021, 11, 8, 2, 0, tzinfo=UTC)  # Mon 10:00
    assert hours.working_hours_between(start, end) == pytest.approx(3.5)


def test_a_whole_year_of_office_time(hours):
    # Every working day has 7 office hours, whatever the season.
    workdays = len(chinese_calendar.get_workdays(date(2021, 1, 1), date(2021, 12, 31)))
    assert workdays == 250
    assert hours.working_hours_between(at("2021-01-01 00:00"), at("2022-01-01 00:00")) == pytest.approx(workdays * 7)


@pytest.mark.parametrize(
    "call",
    [
        lambda h: h.working_hours_between(datetime(2021, 11, 5, 16), at("2021-11-08 10:00")),
        lambda h: h.is_office_time(datetime(2021, 11, 5, 16)),
        lambda h: h.next_office_time(datetime(2021, 11, 5, 16)),
    ],
)
def test_naive_datetimes_are_refused(hours, call):
    with pytest.raises(ValueError, match="naive datetime"):
        call(hours)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2021-11-02 07:59:59", False),
        ("2021-11-02 08:00", True),
        ("2021-11-02 11:59:59", True),
        ("2021-11-02 12:00", False),  # sessions end exclusively
        ("2021-11-02 14:29", False),
        ("2021-11-02 14:30", True),  # winter afternoon
        ("2021-07-06 14:45", False),
        ("2021-07-06 15:00", True),  # summer afternoon
        ("2021-09-30 17:45", True),  # last summer day
        ("2021-10-08 17:45", False),  # winter again
        ("2021-10-09 15:00", True),  # 调休 Saturday
        ("2021-10-04 10:00", False),  # National Day
        ("2021-11-06 10:00", False),  # ordinary Saturday
    ],
)
def test_is_office_time(hours, moment, expected):
    assert hours.is_office_time(at(moment)) is expected


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2021-11-05 10:15", "2021-11-05 10:15"),  # already open
        ("2021-11-05 12:30", "2021-11-05 14:30"),  # lunch
        ("2021-11-05 18:00", "2021-11-08 08:00"),  # Friday evening → Monday
        ("2021-09-25 10:00", "2021-09-26 08:00"),  # Saturday → the 调休 Sunday
        ("2021-09-30 19:00", "2021-10-08 08:00"),  # over National Day
        ("2021-06-01 12:05", "2021-06-01 15:00"),  # summer afternoon
        ("2021-12-31 18:00", "2022-01-04 08:00"),
    ],
)
def test_next_office_time(hours, moment, expected):
    result = hours.next_office_time(at(moment))
    assert result == at(expected)
    assert result.tzinfo is SHANGHAI


def test_next_office_time_reports_an_uncovered_year(hours):
    with pytest.raises(CalendarCoverageError):
        hours.next_office_time(at("2028-12-31 19:00"))


def test_next_office_time_answers_in_asia_shanghai(hours):
    result = hours.next_office_time(datetime(2021, 11, 5, 10, 0, tzinfo=UTC))  # 18:00 local
    assert result.isoformat() == "2021-11-08T08:00:00+08:00"


INSTANTS = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2022, 12, 31)).map(
    lambda moment: moment.replace(tzinfo=SHANGHAI)
)


@given(st.lists(INSTANTS, min_size=3, max_size=3).map(sorted))
def test_working_hours_are_additive(hours, moments):
    a, b, c = moments
    between = hours.working_hours_between
    assert between(a, c) == pytest.approx(between(a, b) + between(b, c), abs=1e-6)


@given(INSTANTS)
def test_next_office_time_is_office_time_with_none_before_it(hours, moment):
    opening = hours.next_office_time(moment)
    assert opening >= moment
    assert hours.is_office_time(opening)
    assert hours.working_hours_between(moment, opening) == 0


def test_the_default_is_the_fujian_schedule():
    schedule = OfficeSchedule.default()
    assert [str(t) for session in schedule.sessions_on(date(2021, 5, 31)) for t in session] == [
        "08:00:00", "12:00:00", "14:30:00", "17:30:00",
    ]
    assert [str(t) for session in schedule.sessions_on(date(2021, 6, 1)) for t in session] == [
        "08:00:00", "12:00:00", "15:00:00", "18:00:00",
    ]
    assert schedule.sessions_on(date(2021, 9, 30)) != schedule.sessions_on(date(2021, 10, 1))
    assert OfficeSchedule.model_validate(schedule.model_dump(by_alias=True)) == schedule


ALL_YEAR_NINE_TO_FIVE = {
    "seasons": [{"name": "all year", "from": "01-01", "to": "12-31", "sessions": [["09:00", "17:00"]]}],
}


def test_the_schedule_is_read_from_the_environment():
    schedule = OfficeSchedule.from_env({"DUBAN_OFFICE_SCHEDULE": json.dumps(ALL_YEAR_NINE_TO_FIVE)})
    hours = OfficeHours(WorkingCalendar(), schedule)
    assert hours.working_hours_between(at("2021-11-05 16:00"), at("2021-11-08 10:00")) == pytest.approx(2.0)
    assert OfficeSchedule.from_env({}) == OfficeSchedule.default()


def _season(**changes) -> dict:
    return {"name": "all year", "from": "01-01", "to": "12-31", "sessions": [["09:00", "17:00"]], **changes}


@pytest.mark.parametrize(
    ("seasons", "problem"),
    [
        ([_season(to="12-30")], "12-31 must fall in exactly one season, found none"),
        ([_season(), _season(name="June", **{"from": "06-01", "to": "06-30"})], "06-01 must fall in exactly one"),
        ([_season(**{"from": "03-01", "to": "02-28"})], "02-29 must fall in exactly one season"),
        ([_season(sessions=[["09:00", "12:00"], ["11:00", "17:00"]])], "must be in order"),
        ([_season(sessions=[["17:00", "09:00"]])], "must be in order"),
        ([_season(sessions=[])], "at least 1 item"),
        ([_season(sessions=[["09:00+08:00", "17:00+08:00"]])], "give no offset"),
        ([_season(to="02-30")], "day is out of range"),
        ([_season(to="1231")], "should match pattern"),
        ([_season(lunch="12:00")], "Extra inputs are not permitted"),
    ],
)
def test_invalid_schedules_are_rejected(seasons, problem):
    with pytest.raises(ValidationError, match=problem.replace("(", r"\(")):
        OfficeSchedule.model_validate({"seasons": seasons})


def test_the_documented_default_is_the_one_in_force():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "calendar.md").read_text("utf-8")
    assert json.loads(docs.split("```json\n", 1)[1].split("```", 1)[0]) == FUJIAN_SCHEDULE



def test_an_instant_whose_zone_has_no_offset_is_refused_like_a_naive_one():
    from datetime import tzinfo

    from duban.workcal import to_shanghai

    class NoOffset(tzinfo):
        def utcoffset(self, moment):
            return None

    with pytest.raises(ValueError, match="naive datetime 2021-11-01T09:00:00: give a time zone"):
        to_shanghai(datetime(2021, 11, 1, 9, tzinfo=NoOffset()))


def test_a_one_day_season_contains_that_day_only():
    from duban.workcal.schedule import Season

    season = Season.model_validate({"name": "one day", "from": "06-01", "to": "06-01", "sessions": [["09:00", "10:00"]]})
    assert [season.contains(d) for d in ("05-31", "06-01", "06-02", "12-31")] == [False, True, False, False]


def test_at_closing_time_the_next_office_time_is_the_next_session(hours):
    assert hours.next_office_time(at("2021-11-01 12:00")) == at("2021-11-01 14:30")
    assert hours.next_office_time(at("2021-11-01 11:59")) == at("2021-11-01 11:59")


def test_office_hours_from_the_environment(monkeypatch):
    monkeypatch.delenv("DUBAN_OFFICE_SCHEDULE", raising=False)
    assert OfficeHours.from_env().schedule == OfficeSchedule.default()
    one_session = {"seasons": [{"name": "all year", "from": "01-01", "to": "12-31", "sessions": [["09:00", "17:00"]]}]}
    monkeypatch.setenv("DUBAN_OFFICE_SCHEDULE", json.dumps(one_session))
    hours = OfficeHours.from_env()
    assert hours.schedule == OfficeSchedule.model_validate(one_session)
    assert hours.working_hours_between(at("2021-11-01 00:00"), at("2021-11-02 00:00")) == 8.0
