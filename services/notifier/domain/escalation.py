"""The escalation ladder (DESIGN §5) as plain functions of an item's state, the calendar and "now".

An item is a task or a milestone. While its light is yellow or red it has one open escalation:

- yellow → level 1 (提醒): the task's responsible units, or its lead when it names none;
- red → level 2 (催办): the lead departments;
- red for `red_days_to_top` working days, or level 2 unacknowledged for `unacknowledged_days_to_top`
  working days → level 3 (督办): the district government office;
- the current level's notice is repeated every `repeat_every_days` working days (a "window");
- an acknowledgement pauses all of it until it expires; green (caught up, or done) resolves it.

Working days follow duban.workcal's counting rule (the start day is not counted)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time

from duban.catalog.models import Milestone, Task
from duban.workcal import SHANGHAI, WorkingCalendar, to_shanghai

LEVEL_NAMES = {1: "提醒", 2: "催办", 3: "督办"}
TOP_LEVEL = 3
FIRST_LEVEL = {"yellow": 1, "red": 2}


@dataclass(frozen=True)
class Policy:
    red_days_to_top: int = 5
    unacknowledged_days_to_top: int = 3
    repeat_every_days: int = 5


@dataclass(frozen=True)
class Ladder:
    """Where an open escalation stands."""

    light: str  # "yellow" or "red"
    level: int
    level_since: datetime
    red_since: datetime | None = None
    acknowledged_until: datetime | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True)
class Evaluation:
    ladder: Ladder
    window: date | None  # first day of the repeat window whose notice is due; None while acknowledged
    next_check: datetime  # when the passing of time alone can next change the answer


def civil(moment: datetime) -> date:
    return to_shanghai(moment).date()


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), SHANGHAI)


def on_light(current: Ladder | None, light: str, at: datetime) -> Ladder | None:
    """The escalation once the item's light became `light` at `at`. `current` is the open one or None;
    the answer is `current` itself when nothing changes, None when there is nothing to escalate."""
    if light == "green":
        return None if current is None else replace(current, resolved_at=at)
    if current is None:
        return Ladder(light, FIRST_LEVEL[light], at, red_since=at if light == "red" else None)
    if light == current.light:
        return current
    if light == "red":
        # Worse than what was acknowledged: that acknowledgement no longer covers it.
        return replace(current, light="red", level=max(current.level, 2), level_since=at, red_since=at,
                       acknowledged_until=None)
    # Caught up from red to yellow: back to reminding the units that do the work.
    return replace(current, light="yellow", level=1, level_since=at, red_since=None)


def is_acknowledged(ladder: Ladder, now: datetime) -> bool:
    return ladder.acknowledged_until is not None and now < ladder.acknowledged_until


def top_level_day(ladder: Ladder, calendar: WorkingCalendar, policy: Policy) -> date | None:
    """The civil date a red item reaches the top level, or None when it cannot by time alone."""
    if ladder.light != "red" or ladder.level >= TOP_LEVEL:
        return None
    by_red = calendar.add_working_days(civil(ladder.red_since), policy.red_days_to_top)
    silent_from = max(ladder.level_since, ladder.acknowledged_until or ladder.level_since)
    by_silence = calendar.add_working_days(civil(silent_from), policy.unacknowledged_days_to_top)
    day = min(by_red, by_silence)
    # Time under acknowledgement counts for the red clock, but the step is taken at its expiry at the earliest.
    return max(day, civil(ladder.acknowledged_until)) if ladder.acknowledged_until else day


def evaluate(ladder: Ladder, now: datetime, calendar: WorkingCalendar, policy: Policy) -> Evaluation:
    """Apply the passing of time: the level due now, and which repeat window's notice is due."""
    if is_acknowledged(ladder, now):
        return Evaluation(ladder, None, ladder.acknowledged_until)
    today = civil(now)
    top = top_level_day(ladder, calendar, policy)
    if top is not None and today >= top:
        ladder = replace(ladder, level=TOP_LEVEL, level_since=midnight(top))
        top = None
    start = civil(ladder.level_since)
    elapsed = calendar.working_days_between(start, today)
    window = calendar.add_working_days(start, elapsed - elapsed % policy.repeat_every_days)
    next_window = calendar.add_working_days(start, elapsed - elapsed % policy.repeat_every_days
                                            + policy.repeat_every_days)
    return Evaluation(ladder, window, midnight(min(next_window, top) if top else next_window))


def addressees(level: int, task: Task, top_department: str) -> tuple[str, ...]:
    """The departments a level's notice goes to."""
    if level == 1:
        return task.responsible or task.lead
    if level == 2:
        return task.lead
    return (top_department,)


def milestone_deadline(milestone: Milestone, on: date) -> date:
    """The occurrence of a (possibly yearly) milestone that a status change on `on` is about:
    the latest one due by then, or the first one when none is due yet."""
    passed = [d for d in milestone.occurrences(on.year) if d <= on]
    return passed[-1] if passed else milestone.due


def task_deadline(task: Task, light: str, on: date, overdue: list[date],
                  extended: Mapping[tuple[str, date], date] | None = None) -> date:
    """The deadline a task's light refers to. Red: the earliest overdue milestone the notifier knows of,
    else the latest due date passed; yellow: the next due date. `extended` maps (milestone id, plan
    date) to an approved extension's date, which counts instead of the plan's."""
    if light == "red" and overdue:
        return min(overdue)
    extended = extended or {}
    due = sorted(extended.get((m.id, d), d) for m in task.milestones for d in m.occurrences(on.year + 1))
    if light == "red":
        passed = [d for d in due if d < on]
        return passed[-1] if passed else due[0]
    return next((d for d in due if d >= on), due[-1])
