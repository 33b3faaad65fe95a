"""The ladder as plain functions over the real working-day calendar (National Day 2021: 1–7 October
off, Sunday 26 September and Saturday 9 October worked)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from services.notifier.domain.escalation import (
    Ladder,
    Policy,
    addressees,
    evaluate,
    milestone_deadline,
    on_light,
    task_deadline,
    top_level_day,
)
from tests.notifier.conftest import CATALOG, HOURS, at

CAL, POLICY = HOURS.calendar, Policy()
T17 = CATALOG.task("T17")


def test_yellow_opens_level_1_and_red_raises_to_level_2():
    yellow = on_light(None, "yellow", at("2021-09-24 10:00"))
    assert (yellow.light, yellow.level, yellow.red_since) == ("yellow", 1, None)
    red = on_light(yellow, "red", at("2021-09-26 09:00"))
    assert (red.light, red.level, red.red_since, red.level_since) == ("red", 2, at("2021-09-26 09:00"), at("2021-09-26 09:00"))
    assert on_light(red, "red", at("2021-09-27 09:00")) is red
    assert on_light(None, "green", at("2021-09-27 09:00")) is None
    assert on_light(red, "green", at("2021-09-28 09:00")).resolved_at == at("2021-09-28 09:00")


def test_catching_up_from_red_steps_back_to_a_reminder():
    red = on_light(None, "red", at("2021-09-26 09:00"))
    back = on_light(red, "yellow", at("2021-09-28 09:00"))
    assert (back.level, back.red_since, back.level_since) == (1, None, at("2021-09-28 09:00"))


def test_red_acknowledgement_is_dropped_when_yellow_turns_red():
    yellow = replace(on_light(None, "yellow", at("2021-09-24 10:00")), acknowledged_until=at("2021-09-30 10:00"))
    assert on_light(yellow, "red", at("2021-09-27 09:00")).acknowledged_until is None


def test_level_2_unacknowledged_for_3_working_days_reaches_level_3():
    red = on_light(None, "red", at("2021-09-26 09:00"))  # a 调休 Sunday, itself not counted
    assert evaluate(red, at("2021-09-28 23:59"), CAL, POLICY).ladder.level == 2
    ev = evaluate(red, at("2021-09-29 00:00"), CAL, POLICY)  # 27, 28, 29
    assert (ev.ladder.level, ev.ladder.level_since, ev.window) == (3, at("2021-09-29 00:00"), date(2021, 9, 29))


def test_red_for_5_working_days_reaches_level_3_counting_tiaoxiu_and_skipping_the_holiday():
    red = replace(on_light(None, "red", at("2021-09-26 09:00")), acknowledged_until=at("2021-09-29 12:00"))
    assert evaluate(red, at("2021-09-29 11:00"), CAL, POLICY).window is None  # paused
    after = evaluate(red, at("2021-09-29 12:00"), CAL, POLICY)
    # Red since Sunday 26 (worked): 27, 28, 29, 30 September and 8 October; not 1 October (a Mon–Fri count).
    assert after.ladder.level == 2 and after.next_check == at("2021-10-08 00:00")
    assert evaluate(red, at("2021-10-07 18:00"), CAL, POLICY).ladder.level == 2
    assert evaluate(red, at("2021-10-08 08:00"), CAL, POLICY).ladder.level == 3


def test_the_current_level_repeats_every_5_working_days():
    top = Ladder("red", 3, at("2021-10-08 00:00"), red_since=at("2021-09-26 09:00"))
    assert evaluate(top, at("2021-10-13 17:00"), CAL, POLICY).window == date(2021, 10, 8)
    # 9 (a worked Saturday), 11, 12, 13, 14 October.
    ev = evaluate(top, at("2021-10-14 09:00"), CAL, POLICY)
    assert (ev.window, ev.next_check) == (date(2021, 10, 14), at("2021-10-21 00:00"))


def test_waits_are_configurable():
    red = on_light(None, "red", at("2021-09-27 09:00"))
    quick = Policy(red_days_to_top=1, unacknowledged_days_to_top=10, repeat_every_days=2)
    assert evaluate(red, at("2021-09-28 09:00"), CAL, quick).ladder.level == 3


def test_each_level_addresses_its_departments():
    assert addressees(1, T17, "district-office") == ("industry-it", "health")
    assert addressees(1, CATALOG.task("T28"), "district-office") == ("hr-social-security",)  # no responsible units
    assert addressees(2, T17, "district-office") == ("digital-office",)
    assert addressees(3, T17, "district-office") == ("district-office",)


def test_deadlines_name_the_date_the_light_is_about():
    assert task_deadline(T17, "yellow", date(2021, 11, 20), []) == date(2021, 12, 31)
    assert task_deadline(T17, "red", date(2022, 1, 3), []) == date(2021, 12, 31)
    assert task_deadline(T17, "red", date(2022, 1, 3), [date(2021, 12, 31)]) == date(2021, 12, 31)
    yearly = CATALOG.milestone("T05-M1")
    assert milestone_deadline(yearly, date(2023, 1, 2)) == date(2022, 12, 31)
    assert milestone_deadline(yearly, date(2021, 6, 1)) == date(2021, 12, 31)


def test_each_rule_of_the_ladder_exactly():
    red = on_light(None, "red", at("2021-09-26 09:00"))
    back = on_light(red, "yellow", at("2021-09-28 09:00"))
    assert (back.light, back.level) == ("yellow", 1)
    # A yellow item never climbs by time alone, and the top level has nowhere further to go.
    assert top_level_day(back, CAL, POLICY) is None
    assert evaluate(back, at("2021-12-01 09:00"), CAL, POLICY).ladder.level == 1
    top = Ladder("red", 3, at("2021-10-08 00:00"), red_since=at("2021-09-26 09:00"))
    assert top_level_day(top, CAL, POLICY) is None
    # While acknowledged, the ladder is returned as it is and the next check is the expiry.
    held = replace(red, acknowledged_until=at("2021-09-29 12:00"))
    paused = evaluate(held, at("2021-09-28 09:00"), CAL, POLICY)
    assert (paused.ladder, paused.window, paused.next_check) == (held, None, at("2021-09-29 12:00"))
    # Part-way through a window, the next notice is due when the window ends: 9, 11, 12, 13 | 14 October.
    assert evaluate(top, at("2021-10-13 17:00"), CAL, POLICY).next_check == at("2021-10-14 00:00")


def test_deadlines_on_the_boundaries():
    yearly = CATALOG.milestone("T05-M1")
    assert milestone_deadline(yearly, date(2022, 12, 31)) == date(2022, 12, 31)  # due that very day
    # Yellow is about the next due date, whatever the notifier knows to be overdue.
    assert task_deadline(T17, "yellow", date(2021, 11, 20), [date(2021, 6, 30)]) == date(2021, 12, 31)
    # Red without a known overdue milestone: the latest date passed, not the next one.
    assert task_deadline(CATALOG.task("T05"), "red", date(2022, 1, 3), []) == date(2021, 12, 31)
    # Red before any date passed (a retroactive grace): the first due date.
    assert task_deadline(CATALOG.task("T07"), "red", date(2021, 5, 20), []) == date(2021, 6, 30)
    # Yellow after the last date: that last date.
    assert task_deadline(T17, "yellow", date(2022, 1, 3), []) == date(2021, 12, 31)


def test_yearly_deadlines_pick_the_right_year():
    t05, yearly = CATALOG.task("T05"), CATALOG.milestone("T05-M1")
    assert milestone_deadline(yearly, date(2024, 1, 2)) == date(2023, 12, 31)  # the latest of three passed
    assert task_deadline(t05, "red", date(2023, 1, 5), [date(2021, 12, 31)]) == date(2021, 12, 31)  # the known overdue
    assert task_deadline(t05, "red", date(2023, 1, 3), []) == date(2022, 12, 31)  # the latest passed
    assert task_deadline(t05, "red", date(2022, 12, 31), []) == date(2021, 12, 31)  # due today has not passed
    assert task_deadline(t05, "yellow", date(2021, 12, 31), []) == date(2021, 12, 31)  # due today is next


def test_an_approved_extension_is_the_deadline_a_yellow_task_names():
    extended = {("T17-M1", date(2021, 12, 31)): date(2022, 3, 31)}
    assert task_deadline(T17, "yellow", date(2021, 11, 20), [], extended) == date(2022, 3, 31)
    # Another occurrence's extension changes nothing.
    assert task_deadline(T17, "yellow", date(2021, 11, 20), [], {("T17-M1", date(2022, 12, 31)): date(2023, 3, 31)}) \
        == date(2021, 12, 31)
