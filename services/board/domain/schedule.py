"""When the board issues a week's 督查通报 on its own: the configured weekday and civil time (Asia/Shanghai) of
that ISO week, moved when the day is not a working day. Pure: the working-day calendar is passed in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from services.board.domain.bulletin import SHANGHAI, week_days, week_of

# The archive's issued_by of an automatic bulletin.
SCHEDULE = "schedule"


@dataclass(frozen=True)
class IssueSchedule:
    weekday: int  # ISO: 1 = Monday … 7 = Sunday
    at: time

    def issue_day(self, week: str, is_workday: Callable[[date], bool]) -> date | None:
        """The configured day when it is a working day; else the last working day of the week before it (a
        bulletin comes no later than promised: a holiday Friday moves it to Thursday); else the first working
        day after it in the same week (a 调休 weekend day); None for a week without a working day."""
        monday, _ = week_days(week)
        configured = monday + timedelta(days=self.weekday - 1)
        before = [monday + timedelta(days=k) for k in range(self.weekday)]
        for day in reversed(before):
            if is_workday(day):
                return day
        after = [configured + timedelta(days=k) for k in range(1, 8 - self.weekday)]
        return next((day for day in after if is_workday(day)), None)

    def due(self, now: datetime, is_workday: Callable[[date], bool]) -> str | None:
        """The week whose bulletin is due at `now`: the current ISO week once its issue time has come. A week
        whose time passed while no board ran is caught up within that week only; the next week has its own."""
        week = week_of(now.astimezone(SHANGHAI).date())
        day = self.issue_day(week, is_workday)
        if day is None or now < datetime.combine(day, self.at, SHANGHAI):
            return None
        return week
