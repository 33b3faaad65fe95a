"""Milestone occurrences and task lights as pure functions of the reports, completions and the date."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest

from duban.workcal import WorkingCalendar
from services.tracker.domain.tasks import (
    Completion,
    Light,
    Occurrence,
    occurrences,
    retroactive_grace,
    task_light,
    verification_grace,
)
from tests.tracker.conftest import CALENDAR, CATALOG

ISSUED = CATALOG.plan.issued


def completion(milestone_id: str, on: date, n: int = 0) -> Completion:
    moment = datetime(on.year, on.month, on.day, 3, tzinfo=timezone.utc)
    return Completion(milestone_id, on, (moment, "/departments/x", f"c{n}"), "/departments/x", f"c{n}")


GRACE = retroactive_grace(ISSUED, CALENDAR)  # 10 working days after the issue


def light_of(task_id: str, today: date, *, status: str = "in_progress", done_on: date | None = None,
             completions=(), calendar: WorkingCalendar = CALENDAR):
    occs = occurrences(CATALOG.task(task_id).milestones, completions, plan_issued=ISSUED, today=today,
                       grace_until=GRACE)
    return task_light(occs, status=status, done_on=done_on, today=today, calendar=calendar)


@pytest.mark.parametrize(("today", "light", "reason"), [
    (date(2021, 6, 1), "green", "on_track"),         # T19-M1 due 2021-12-31: 213 of 234 days left
    (date(2021, 10, 20), "green", "on_track"),        # 72 days left > 30 % of the 234-day span
    (date(2021, 10, 25), "yellow", "deadline_near"),  # 67 days left ≤ 30 % of 234
    (date(2021, 12, 31), "yellow", "deadline_near"),  # the due day itself is not past due
    (date(2022, 1, 1), "red", "past_due"),
])
def test_a_light_follows_the_time_left(today, light, reason):
    verdict = light_of("T19", today)
    assert (verdict.light, verdict.reason, verdict.due) == (light, reason, date(2021, 12, 31))


def test_ten_working_days_left_is_yellow_even_with_much_of_a_long_span_left():
    # T08-M1 is due 2022-12-31: from mid-December on there are at most 10 working days left, but
    # 30 % of the span (599 days) was reached long before; use a span that is long, checked mid-span.
    assert light_of("T08", date(2022, 6, 1)).light == "green"
    assert light_of("T08", date(2022, 12, 16)).reason == "deadline_near"


def test_the_light_steps_back_down_when_the_unit_catches_up():
    late = date(2022, 3, 1)
    assert light_of("T07", late).light == "red"
    assert light_of("T07", late, completions=[completion("T07-M1", late)]).light == "red"  # M2 still overdue
    both = [completion("T07-M1", late, 1), completion("T07-M2", late, 2)]
    assert (light_of("T07", late, completions=both).light, light_of("T07", late, completions=both).reason) == ("green", "done")
    assert light_of("T07", late, status="done", done_on=late).reason == "done"


def test_yearly_milestones_recur_and_completions_catch_up_the_oldest_year_first():
    today = date(2023, 3, 1)
    occs = occurrences(CATALOG.task("T22").milestones, [completion("T22-M1", date(2022, 12, 20))],
                       plan_issued=ISSUED, today=today)
    assert [(o.due, o.status(today)) for o in occs] == [
        (date(2021, 12, 31), "done"), (date(2022, 12, 31), "overdue"), (date(2023, 12, 31), "open")]
    assert occs[1].starts == date(2021, 12, 31)
    # A task reported done in 2021 does not settle its 2022 duty.
    assert light_of("T22", today, status="done", done_on=date(2021, 12, 1)).light == "red"


def test_a_year_the_calendar_lacks_is_flagged_and_counted_in_calendar_days(tmp_path):
    bare = WorkingCalendar(tmp_path, provisional_years=0)  # only the package's years
    year = max(bare.covered_years()) + 1
    earlier_years = [completion("T22-M1", date(y, 12, 1), y) for y in range(2021, year)]
    verdict = light_of("T22", date(year, 6, 1), calendar=bare, completions=earlier_years)
    assert (verdict.light, verdict.basis, verdict.uncovered_year) == ("green", "calendar_days", year)
    # Where the 30 % rule already decides, the missing year does not matter and is not flagged.
    verdict = light_of("T22", date(year, 12, 20), calendar=bare, completions=earlier_years)
    assert (verdict.light, verdict.basis) == ("yellow", "working_days")


def test_a_milestone_due_before_the_plan_was_issued_gets_a_grace_and_is_retroactive():
    # T02-M1 was due 2021-03-31; the plan was issued 2021-05-11, so it cannot be red on its first day.
    assert (ISSUED, GRACE) == (date(2021, 5, 11), date(2021, 5, 25))
    occs = occurrences(CATALOG.task("T02").milestones, (), plan_issued=ISSUED, today=ISSUED, grace_until=GRACE)
    first = next(o for o in occs if o.milestone_id == "T02-M1")
    assert (first.due, first.retroactive, first.deadline, first.status(ISSUED)) == (
        date(2021, 3, 31), True, GRACE, "open")
    assert not any(o.retroactive for o in occs if o.milestone_id != "T02-M1")
    verdict = light_of("T02", ISSUED)
    assert (verdict.light, verdict.reason, verdict.due) == ("yellow", "deadline_near", GRACE)
    assert light_of("T02", date(2021, 5, 26)).light == "red"  # the grace is over
    done = [completion("T02-M1", date(2021, 5, 20))]
    assert light_of("T02", date(2021, 5, 26), completions=done).light == "green"


def test_without_a_grace_a_retroactive_milestone_is_judged_by_its_due_date():
    occs = occurrences(CATALOG.task("T02").milestones, (), plan_issued=ISSUED, today=ISSUED)
    verdict = task_light(occs, status="in_progress", done_on=None, today=ISSUED, calendar=CALENDAR)
    assert (verdict.light, verdict.due) == ("red", date(2021, 3, 31))


# --- each rule at its boundary -------------------------------------------------------------------


def test_the_grace_counts_working_days_from_the_issue():
    assert retroactive_grace(ISSUED, CALENDAR) == date(2021, 5, 25)
    assert retroactive_grace(ISSUED, CALENDAR, 3) == date(2021, 5, 14)  # Wed 12, Thu 13, Fri 14


def test_a_milestone_due_on_the_issue_day_is_not_retroactive():
    milestone = CATALOG.task("T19").milestones[0].model_copy(update={"due": ISSUED})
    occ, = occurrences([milestone], (), plan_issued=ISSUED, today=ISSUED, grace_until=GRACE)
    assert (occ.due, occ.retroactive, occ.deadline) == (ISSUED, False, ISSUED)


def test_a_one_off_milestone_may_be_done_in_a_year_before_its_due_year():
    milestone = CATALOG.task("T19").milestones[0].model_copy(update={"due": date(2022, 6, 30)})
    early = completion(milestone.id, date(2021, 12, 1))
    occ, = occurrences([milestone], [early], plan_issued=ISSUED, today=date(2021, 12, 2))
    assert occ.done_by == early


def test_a_deadline_that_began_on_its_due_day_is_near_at_once():
    due = date(2021, 12, 31)
    occ = Occurrence("M", due, starts=due)
    assert task_light([occ], status="in_progress", done_on=None, today=date(2021, 6, 1), calendar=CALENDAR) == Light(
        "yellow", "deadline_near", due)


def test_a_task_done_on_the_due_day_settles_it():
    due = date(2021, 12, 31)
    occ = Occurrence("M", due, starts=date(2021, 1, 1))
    assert task_light([occ], status="done", done_on=due, today=date(2022, 1, 5), calendar=CALENDAR) == Light(
        "green", "done", None)
    assert task_light([occ], status="in_progress", done_on=due, today=date(2022, 1, 5), calendar=CALENDAR) == Light(
        "red", "past_due", due)


def test_in_a_year_the_calendar_lacks_14_calendar_days_stand_for_10_working_days(tmp_path):
    bare = WorkingCalendar(tmp_path, provisional_years=0)
    year = max(bare.covered_years()) + 1
    due = date(year, 6, 30)
    occ = Occurrence("M", due, starts=due - timedelta(days=40))  # 30 % of 40 days: 12 days

    def light(days_left: int) -> Light:
        return task_light([occ], status="in_progress", done_on=None, today=due - timedelta(days=days_left),
                          calendar=bare)
    assert light(14) == Light("yellow", "deadline_near", due, "calendar_days", year)
    assert light(15) == Light("green", "on_track", due, "calendar_days", year)
    assert light(12) == Light("yellow", "deadline_near", due)  # the 30 % rule decides before the calendar is asked


def test_the_worst_light_says_when_another_open_deadline_lies_in_a_year_the_calendar_lacks(tmp_path):
    bare = WorkingCalendar(tmp_path, provisional_years=0)
    year = max(bare.covered_years()) + 1
    near = Occurrence("M1", date(year - 1, 12, 31), starts=date(year - 1, 1, 1))
    later = Occurrence("M2", date(year, 12, 31), starts=date(year - 1, 12, 31))
    today = date(year - 1, 12, 30)
    assert task_light([later, near], status="in_progress", done_on=None, today=today, calendar=bare) == Light(
        "yellow", "deadline_near", date(year - 1, 12, 31), "calendar_days", year)
    # The uncovered deadline itself is the worst: its own basis stands.
    late = Occurrence("M3", date(year, 1, 10), starts=date(year - 1, 12, 1))
    assert task_light([late], status="in_progress", done_on=None, today=date(year, 1, 11), calendar=bare) == Light(
        "red", "past_due", date(year, 1, 10))
    assert task_light([late, later], status="in_progress", done_on=None, today=date(year - 1, 12, 30),
                      calendar=bare) == Light("yellow", "deadline_near", date(year, 1, 10), "calendar_days", year)


def test_a_deadline_that_began_a_day_before_it_follows_the_time_left():
    due = date(2021, 12, 31)
    occ = Occurrence("M", due, starts=due - timedelta(days=1))
    assert task_light([occ], status="in_progress", done_on=None, today=date(2021, 6, 1), calendar=CALENDAR) == Light(
        "green", "on_track", due)


# -- awaiting verification (办结销号) -----------------------------------------------------------------

def test_a_completion_awaiting_verification_keeps_its_occurrence_from_red_through_the_grace_only():
    done_on = date(2021, 12, 29)  # T19-M1 due 2021-12-31, completed two days before
    grace = verification_grace(done_on, CALENDAR, 5)
    awaiting = Completion("T19-M1", done_on, (datetime(2021, 12, 29, 3, tzinfo=timezone.utc), "/d/x", "c1"), "/d/x",
                          "c1", awaiting_until=grace)
    assert grace == date(2022, 1, 6)  # five working days; New Year's Day holiday skipped
    for today, light, status, announced in [(date(2022, 1, 4), "green", "awaiting_verification", "open"),
                                            (grace, "green", "awaiting_verification", "open"),
                                            (grace + timedelta(days=1), "red", "awaiting_verification", "overdue")]:
        occs = occurrences(CATALOG.task("T19").milestones, [awaiting], plan_issued=ISSUED, today=today)
        [occ] = [o for o in occs if o.milestone_id == "T19-M1"]
        assert (task_light(occs, status="in_progress", done_on=None, today=today, calendar=CALENDAR).light,
                occ.status(today), occ.announced_status(today)) == (light, status, announced), today
    verified = replace(awaiting, awaiting_until=None)
    occs = occurrences(CATALOG.task("T19").milestones, [verified], plan_issued=ISSUED, today=date(2022, 3, 1))
    assert [o.status(date(2022, 3, 1)) for o in occs if o.milestone_id == "T19-M1"] == ["done"]


def test_a_done_report_awaiting_verification_closes_the_task_through_its_grace_only():
    today = done_on = date(2022, 1, 10)  # T19-M1, due 2021-12-31, is past due
    occs = occurrences(CATALOG.task("T19").milestones, [], plan_issued=ISSUED, today=today)

    def light(status: str, awaiting_until: date | None = None) -> str:
        return task_light(occs, status=status, done_on=done_on, today=today, calendar=CALENDAR,
                          awaiting_until=awaiting_until).reason

    assert (light("done"), light("in_progress")) == ("done", "past_due")
    assert light("awaiting_verification", awaiting_until=today) == "done"
    assert light("awaiting_verification", awaiting_until=today - timedelta(days=1)) == "past_due"


def test_an_approved_extension_is_the_occurrences_deadline():
    today = date(2022, 1, 10)  # T19-M1, due 2021-12-31, extended to 2022-03-31
    occs = occurrences(CATALOG.task("T19").milestones, [], plan_issued=ISSUED, today=today,
                       extensions={("T19-M1", date(2021, 12, 31)): date(2022, 3, 31)})
    [occ] = [o for o in occs if o.milestone_id == "T19-M1"]
    assert (occ.due, occ.deadline, occ.status(today)) == (date(2021, 12, 31), date(2022, 3, 31), "open")
    assert task_light(occs, status="in_progress", done_on=None, today=today, calendar=CALENDAR).due == date(2022, 3, 31)
