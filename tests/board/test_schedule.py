"""When the week's automatic bulletin is due: the configured day and time, moved off a day off (the 2021 Mid-Autumn
and National Day weeks of the real working-day calendar)."""

from __future__ import annotations

from datetime import time

from duban.workcal import WorkingCalendar
from services.board.domain.schedule import IssueSchedule
from tests.conftest import at

CALENDAR = WorkingCalendar()
FRIDAY_AT_4 = IssueSchedule(5, time(16, 0))


def test_the_bulletin_is_due_on_friday_at_16_and_not_before():
    assert FRIDAY_AT_4.due(at("2021-09-24 15:59:59"), CALENDAR.is_workday) is None
    assert FRIDAY_AT_4.due(at("2021-09-24 16:00"), CALENDAR.is_workday) == "2021-W38"
    # A board down on Friday afternoon catches up on its week until Sunday's end, not in the next week.
    assert FRIDAY_AT_4.due(at("2021-09-26 23:59"), CALENDAR.is_workday) == "2021-W38"
    assert FRIDAY_AT_4.due(at("2021-09-27 09:00"), CALENDAR.is_workday) is None


def test_a_friday_off_moves_the_bulletin_to_the_last_working_day_before_it():
    # National Day 2021 is Friday 1 October: the week's bulletin comes on Thursday 30 September at 16:00.
    assert FRIDAY_AT_4.issue_day("2021-W39", CALENDAR.is_workday).isoformat() == "2021-09-30"
    assert FRIDAY_AT_4.due(at("2021-09-30 15:59"), CALENDAR.is_workday) is None
    assert FRIDAY_AT_4.due(at("2021-09-30 16:00"), CALENDAR.is_workday) == "2021-W39"
    # The week after, Friday 8 October is worked (调休), as is the Saturday after it: Friday it is.
    assert FRIDAY_AT_4.issue_day("2021-W40", CALENDAR.is_workday).isoformat() == "2021-10-08"


def test_with_no_working_day_before_it_the_first_one_after_it_in_the_week():
    # Monday to Thursday 4–7 October 2021 are off: a Monday schedule issues on the worked Friday.
    assert IssueSchedule(1, time(9, 0)).issue_day("2021-W40", CALENDAR.is_workday).isoformat() == "2021-10-08"
    assert IssueSchedule(5, time(16, 0)).issue_day("2021-W38", lambda day: False) is None
    assert IssueSchedule(5, time(16, 0)).due(at("2021-09-24 17:00"), lambda day: False) is None
