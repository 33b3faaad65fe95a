from datetime import UTC, datetime

import pytest

from duban.workcal import (
    PAUSE_REASONS,
    SHANGHAI,
    CalendarCoverageError,
    CaseDurations,
    OfficeHours,
    OfficeSchedule,
    Pause,
    PausedInterval,
    WorkingCalendar,
    budget_fraction,
    case_durations,
)


@pytest.fixture(scope="module")
def hours() -> OfficeHours:
    return OfficeHours(WorkingCalendar(), OfficeSchedule.default())


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


# Mon 2021-11-01 09:00 → Fri 2021-11-12 10:00, winter hours, no holidays:
# 11 calendar days; working days 11-02…05 and 11-08…12 = 9; hours 6 + 7·8 + 2 = 64.
OPENED, CLOSED = at("2021-11-01 09:00"), at("2021-11-12 10:00")
# Paused Wed 11-03 09:00 → Mon 11-08 09:00: 5 civil days, working days 11-04, 11-05, 11-08 = 3,
# office hours 6 (rest of 11-03) + 7 + 7 + 1 (11-08 08–09) = 21.
PAUSED_AT, RESUMED_AT = at("2021-11-03 09:00"), at("2021-11-08 09:00")


def test_a_case_without_pauses(hours):
    assert case_durations(hours=hours, opened_at=OPENED, closed_at=CLOSED) == CaseDurations(
        calendar_days=11, working_days=9, working_hours=64.0, paused=(), ignored=()
    )


def test_the_worked_example_across_a_holiday_and_a_working_saturday(hours):
    # Thu 2021-09-16 10:00 → Wed 09-22 11:00 (summer hours): Fri 17 and Sat 18 (调休) full, 19–21 off.
    durations = case_durations(hours=hours, opened_at=at("2021-09-16 10:00"), closed_at=at("2021-09-22 11:00"))
    assert (durations.calendar_days, durations.working_days) == (6, 3)
    assert durations.working_hours == pytest.approx(5 + 7 + 7 + 3)


def test_a_pause_is_excluded_from_all_three_units(hours):
    durations = case_durations(
        hours=hours, opened_at=OPENED, closed_at=CLOSED, pauses=[(PAUSED_AT, RESUMED_AT, "expert_review")]
    )
    assert (durations.calendar_days, durations.working_days) == (11 - 5, 9 - 3)
    assert durations.working_hours == pytest.approx(64 - 21)
    assert durations.paused == (PausedInterval(PAUSED_AT, RESUMED_AT, ("expert_review",)),)
    assert durations.ignored == ()


def test_a_pause_with_an_unknown_reason_is_reported_but_not_excluded(hours):
    pause = Pause(PAUSED_AT, RESUMED_AT, "waiting_for_lunch")
    durations = case_durations(hours=hours, opened_at=OPENED, closed_at=CLOSED, pauses=[pause])
    assert (durations.calendar_days, durations.working_days, durations.working_hours) == (11, 9, 64.0)
    assert durations.paused == ()
    assert durations.ignored == (pause,)


def test_overlapping_pauses_are_merged(hours):
    pauses = [
        (at("2021-11-04 09:00"), RESUMED_AT, "appraisal"),
        (PAUSED_AT, at("2021-11-05 09:00"), "hearing"),
        (at("2021-11-04 10:00"), at("2021-11-04 11:00"), "hearing"),
    ]
    durations = case_durations(hours=hours, opened_at=OPENED, closed_at=CLOSED, pauses=pauses)
    assert durations.paused == (PausedInterval(PAUSED_AT, RESUMED_AT, ("hearing", "appraisal")),)
    assert (durations.calendar_days, durations.working_days) == (6, 6)
    assert durations.working_hours == pytest.approx(43)


def test_an_unresumed_pause_runs_to_the_end_of_an_open_case(hours):
    durations = case_durations(
        hours=hours, opened_at=OPENED, as_of=CLOSED, pauses=[(PAUSED_AT, None, "public_notice")]
    )
    # Active only from opening to the pause: 11-01 09:00 → 11-03 09:00.
    assert (durations.calendar_days, durations.working_days) == (2, 2)
    assert durations.working_hours == pytest.approx(6 + 7 + 1)
    assert durations.paused == (PausedInterval(PAUSED_AT, CLOSED, ("public_notice",)),)


def test_pauses_are_clipped_to_the_life_of_the_case(hours):
    pauses = [
        (at("2021-10-25 09:00"), at("2021-11-02 09:00"), "supplement"),  # began before the case opened
        (at("2021-11-12 09:00"), at("2021-11-20 09:00"), "inspection"),  # still paused at closing
        (at("2021-11-15 09:00"), at("2021-11-16 09:00"), "tender"),  # after closing
    ]
    durations = case_durations(hours=hours, opened_at=OPENED, closed_at=CLOSED, pauses=pauses)
    assert durations.paused == (
        PausedInterval(OPENED, at("2021-11-02 09:00"), ("supplement",)),
        PausedInterval(at("2021-11-12 09:00"), CLOSED, ("inspection",)),
    )
    assert (durations.calendar_days, durations.working_days) == (11 - 1 - 0, 9 - 1 - 0)
    assert durations.working_hours == pytest.approx(64 - 7 - 1)


def test_as_of_before_closing_measures_the_case_as_it_was_then(hours):
    durations = case_durations(hours=hours, opened_at=OPENED, closed_at=CLOSED, as_of=at("2021-11-02 09:00"))
    assert (durations.calendar_days, durations.working_days, durations.working_hours) == (1, 1, 7.0)


def test_instants_in_other_zones_are_read_in_asia_shanghai(hours):
    # 2021-11-01 16:30 UTC is 00:30 on 11-02 in Fuzhou: a different civil date.
    durations = case_durations(
        hours=hours, opened_at=datetime(2021, 11, 1, 16, 30, tzinfo=UTC), closed_at=at("2021-11-03 00:00")
    )
    assert (durations.calendar_days, durations.working_days, durations.working_hours) == (1, 1, 7.0)


def test_an_uncovered_date_is_an_error(hours):
    with pytest.raises(CalendarCoverageError):
        case_durations(hours=hours, opened_at=at("2028-12-30 09:00"), as_of=at("2029-01-05 09:00"))


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"opened_at": OPENED}, "give closed_at"),
        ({"opened_at": CLOSED, "closed_at": OPENED}, "ends .* before it opens"),
        ({"opened_at": datetime(2021, 11, 1, 9), "closed_at": CLOSED}, "naive datetime"),
        ({"opened_at": OPENED, "closed_at": CLOSED, "pauses": [(RESUMED_AT, PAUSED_AT, "hearing")]}, "resumes"),
        ({"opened_at": OPENED, "closed_at": CLOSED, "pauses": [(datetime(2021, 11, 3), None, "hearing")]}, "naive"),
    ],
)
def test_invalid_input_is_refused(hours, arguments, problem):
    with pytest.raises(ValueError, match=problem):
        case_durations(hours=hours, **arguments)


def test_pause_reasons_are_the_contracts_pause_reasons():
    # The clock excludes exactly the pauses the event contract lets a department report.
    from duban.events.models import PauseReason

    assert set(PAUSE_REASONS) == {reason.value for reason in PauseReason}
    assert PAUSE_REASONS["supplement"] == "补正材料" and PAUSE_REASONS["expert_review"] == "专家评审"


@pytest.mark.parametrize(
    ("elapsed", "allowed", "fraction"), [(0, 7, 0.0), (3.5, 7, 0.5), (5.25, 7, 0.75), (7, 7, 1.0), (14, 7, 2.0)]
)
def test_budget_fraction(elapsed, allowed, fraction):
    assert budget_fraction(elapsed, allowed) == fraction


@pytest.mark.parametrize("allowed", [0, -1])
def test_budget_fraction_needs_a_positive_allowance(allowed):
    with pytest.raises(ValueError, match="must be positive"):
        budget_fraction(1, allowed)


def test_boundaries_of_the_clock(hours):
    # A case closed at the instant it opened took no time, and is no error.
    assert case_durations(hours=hours, opened_at=OPENED, closed_at=OPENED) == CaseDurations(0, 0, 0.0, (), ())
    # A pause resumed at the instant it began excludes nothing, and is no error.
    instant = case_durations(hours=hours, opened_at=OPENED, closed_at=CLOSED,
                             pauses=[(PAUSED_AT, PAUSED_AT, "supplement")])
    assert (instant.working_days, instant.paused) == (9, ())
    # Back-to-back pauses are one interval with both reasons.
    middle = at("2021-11-05 09:00")
    joined = case_durations(hours=hours, opened_at=OPENED, closed_at=CLOSED,
                            pauses=[(PAUSED_AT, middle, "supplement"), (middle, RESUMED_AT, "expert_review")])
    assert joined.paused == (PausedInterval(PAUSED_AT, RESUMED_AT, ("supplement", "expert_review")),)
    assert budget_fraction(1, 0.5) == 2.0
    with pytest.raises(ValueError, match="^give closed_at for a closed case or as_of for an open one$"):
        case_durations(hours=hours, opened_at=OPENED)
