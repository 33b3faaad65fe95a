"""A task's milestones and its light (亮灯), as pure functions of its reports, completions and the date.

DESIGN §5: green on track; yellow when at most 30 % of the time to the deadline is left, or at
most 10 working days, and it is not done; red when past due and not done; the light steps back
down when the unit catches up. A milestone due before the plan was issued (T02-M1, 2021-03-31, in a
plan issued 2021-05-11) is retroactive: it may still be reported done until a grace deadline after the
issue date before it turns red. A completion or a done report awaits the district office's verification
(办结销号, docs/decisions/020): until then it closes its occurrences only through a grace date, after
which the occurrences are judged by their deadlines again. See docs/tracker.md for the rules as decided here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date

from duban.catalog.models import Milestone
from duban.workcal import CalendarCoverageError, WorkingCalendar

YELLOW_SHARE_LEFT = 0.30
YELLOW_WORKING_DAYS = 10
# Used only when the working-day calendar lacks the year: 10 working days at five a week.
YELLOW_CALENDAR_DAYS = 14
RETROACTIVE_GRACE_WORKING_DAYS = 10  # default grace after the plan's issue for a milestone due before it
_SEVERITY = {"green": 0, "yellow": 1, "red": 2}


@dataclass(frozen=True)
class Completion:
    """A TaskMilestoneCompleted event."""

    milestone_id: str
    on: date  # civil date (Asia/Shanghai) of the event time
    order: tuple  # (event time, source, id): the deterministic order completions are assigned in
    source: str
    event_id: str
    # Set while the district office has not verified the completion: it closes its occurrence only
    # through this date (the verification grace). None: verified.
    awaiting_until: date | None = None


@dataclass(frozen=True)
class Occurrence:
    """One due date of a milestone (a yearly milestone has one a year)."""

    milestone_id: str
    due: date
    starts: date  # when the time to this deadline began: the previous occurrence, or the plan's issue
    done_by: Completion | None = None
    grace_until: date | None = None  # a retroactive occurrence (due before the plan's issue) is judged by this
    extended_to: date | None = None  # the date of an approved extension (延期), which replaces the others

    @property
    def retroactive(self) -> bool:
        return self.grace_until is not None

    @property
    def deadline(self) -> date:
        """The date the occurrence turns overdue after: an approved extension's date, else its due date,
        or the grace deadline if retroactive."""
        return self.extended_to or self.grace_until or self.due

    def status(self, today: date) -> str:
        if self.done_by:
            return "awaiting_verification" if self.done_by.awaiting_until else "done"
        return "overdue" if today > self.deadline else "open"

    def is_open(self, today: date) -> bool:
        """Still to be judged by its deadline: not completed, or completed and left unverified past the grace."""
        return self.done_by is None or (self.done_by.awaiting_until is not None and today > self.done_by.awaiting_until)

    def announced_status(self, today: date) -> str:
        """The status in the vocabulary of the milestone status-changed event (open, done, overdue):
        an occurrence awaiting verification is open, or overdue once its grace and its deadline have passed."""
        if self.done_by and self.done_by.awaiting_until:
            return "overdue" if self.is_open(today) and today > self.deadline else "open"
        return self.status(today)


@dataclass(frozen=True)
class Light:
    light: str
    reason: str
    due: date | None  # the deadline that decided it; None when nothing is open
    basis: str = "working_days"  # "calendar_days" when the calendar does not cover the year
    uncovered_year: int | None = None


def retroactive_grace(plan_issued: date, calendar: WorkingCalendar,
                      working_days: int = RETROACTIVE_GRACE_WORKING_DAYS) -> date:
    """The deadline of a milestone that fell due before the plan was issued: `working_days` after the issue."""
    return calendar.add_working_days(plan_issued, working_days)


def occurrences(milestones: Sequence[Milestone], completions: Iterable[Completion], *, plan_issued: date,
                today: date, grace_until: date | None = None,
                extensions: Mapping[tuple[str, date], date] | None = None) -> list[Occurrence]:
    """Every occurrence due up to the end of today's year, each completed by at most one completion.
    An occurrence due before `plan_issued` is retroactive and judged by `grace_until` (by its due date
    when no grace is given); one in `extensions` ((milestone id, due) → approved date) by that date.

    Completions are assigned in (event time, source, id) order to the oldest occurrence of their
    milestone that is still open and due in or before the completion's year: catching up on an
    overdue year comes first, and a duty cannot be done ahead for a later year."""
    through = max(today.year, *(m.due.year for m in milestones))
    result: list[Occurrence] = []
    pending = sorted(completions, key=lambda c: c.order)
    for milestone in milestones:
        starts, mine = plan_issued, []
        for due in milestone.occurrences(through):
            grace = grace_until if grace_until and due < plan_issued else None
            mine.append(Occurrence(milestone.id, due, starts, grace_until=grace,
                                   extended_to=(extensions or {}).get((milestone.id, due))))
            starts = due
        for completion in (c for c in pending if c.milestone_id == milestone.id):
            for i, occ in enumerate(mine):
                if occ.done_by is None and (milestone.recurrence is None or occ.due.year <= completion.on.year):
                    mine[i] = replace(occ, done_by=completion)
                    break
        result.extend(mine)
    return result


def _deadline_light(occ: Occurrence, today: date, calendar: WorkingCalendar) -> Light:
    due = occ.deadline
    if today > due:
        return Light("red", "past_due", due)
    span, left = (due - occ.starts).days, (due - today).days
    near = span <= 0 or left <= YELLOW_SHARE_LEFT * span
    try:
        near = near or calendar.working_days_between(today, due) <= YELLOW_WORKING_DAYS
    except CalendarCoverageError as gap:
        near = near or left <= YELLOW_CALENDAR_DAYS
        return Light("yellow" if near else "green", "deadline_near" if near else "on_track", due,
                     "calendar_days", gap.year)
    return Light("yellow" if near else "green", "deadline_near" if near else "on_track", due)


def verification_grace(requested_on: date, calendar: WorkingCalendar, working_days: int) -> date:
    """The last day a completion awaiting verification keeps its occurrences from turning red."""
    return calendar.add_working_days(requested_on, working_days)


def task_light(occs: Sequence[Occurrence], *, status: str, done_on: date | None, today: date,
               calendar: WorkingCalendar, awaiting_until: date | None = None) -> Light:
    """The worst light over the occurrences still open; a task reported done closes every occurrence
    due by the day of that report (a yearly duty's later years stay open). A done report awaiting
    verification (`status` awaiting_verification) closes them only through `awaiting_until`."""
    closing = done_on if status == "done" or (status == "awaiting_verification" and awaiting_until
                                              and today <= awaiting_until) else None
    open_occs = [o for o in occs if o.is_open(today) and not (closing and o.due <= closing)]
    if not open_occs:
        return Light("green", "done", None)
    lights = [_deadline_light(o, today, calendar) for o in sorted(open_occs, key=lambda o: o.deadline)]
    worst = max(lights, key=lambda x: _SEVERITY[x.light])  # max keeps the first: the earliest deadline
    gap = next((x for x in lights if x.uncovered_year), None)
    if gap and worst.basis != "calendar_days":
        worst = Light(worst.light, worst.reason, worst.due, gap.basis, gap.uncovered_year)
    return worst
