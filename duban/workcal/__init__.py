"""Working-day calendar, office hours and case clocks (Asia/Shanghai civil time)."""

from duban.workcal.calendar import (
    CalendarCoverageError,
    CalendarDataError,
    CalendarFile,
    WorkingCalendar,
    YearCoverage,
    load_calendar_file,
)
from duban.workcal.clock import (
    PAUSE_REASONS,
    CaseDurations,
    Pause,
    PausedInterval,
    budget_fraction,
    case_durations,
)
from duban.workcal.schedule import SHANGHAI, OfficeHours, OfficeSchedule, Season, to_shanghai

__all__ = [
    "PAUSE_REASONS",
    "SHANGHAI",
    "CalendarCoverageError",
    "CalendarDataError",
    "CalendarFile",
    "CaseDurations",
    "OfficeHours",
    "OfficeSchedule",
    "Pause",
    "PausedInterval",
    "Season",
    "WorkingCalendar",
    "YearCoverage",
    "budget_fraction",
    "case_durations",
    "load_calendar_file",
    "to_shanghai",
]
