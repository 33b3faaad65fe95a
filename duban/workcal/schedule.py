"""Office hours (工作小时): seasonal sessions on working days, in Asia/Shanghai civil time.

The schedule is configuration (`DUBAN_OFFICE_SCHEDULE`, JSON); the default is the Fujian
provincial schedule: 08:00–12:00 all year, afternoons 14:30–17:30 from 1 Oct to 31 May and
15:00–18:00 from 1 Jun to 30 Sep.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from duban.workcal.calendar import WorkingCalendar

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Office sessions as JSON (OfficeSchedule) replacing the default Fujian schedule (docs/calendar.md).
OFFICE_SCHEDULE_ENV = "DUBAN_OFFICE_SCHEDULE"

FUJIAN_SCHEDULE = {
    "seasons": [
        {"name": "winter", "from": "10-01", "to": "05-31", "sessions": [["08:00", "12:00"], ["14:30", "17:30"]]},
        {"name": "summer", "from": "06-01", "to": "09-30", "sessions": [["08:00", "12:00"], ["15:00", "18:00"]]},
    ]
}

_LEAP_YEAR = 2000  # month-days are checked against a leap year so that 02-29 is valid and must be covered


def to_shanghai(moment: datetime) -> datetime:
    """The same instant in Asia/Shanghai; naive datetimes are refused because their zone is a guess."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: give a time zone (event times are instants)")
    return moment.astimezone(SHANGHAI)


def _month_day(text: str) -> str:
    date(_LEAP_YEAR, int(text[:2]), int(text[3:]))  # raises ValueError for 02-30, 13-01…
    return text


# "MM-DD" strings order like the days they name, so ranges compare as plain strings.
MonthDay = Annotated[str, StringConstraints(pattern=r"^[0-9]{2}-[0-9]{2}$"), AfterValidator(_month_day)]
Session = tuple[time, time]


class Season(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1)
    first: MonthDay = Field(alias="from")
    last: MonthDay = Field(alias="to")
    sessions: list[Session] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered_sessions(self) -> Season:
        bounds = [moment for session in self.sessions for moment in session]
        if any(moment.tzinfo is not None for moment in bounds):
            raise ValueError(f"season {self.name!r}: session times are Asia/Shanghai civil times, give no offset")
        if any(later <= earlier for earlier, later in pairwise(bounds)):
            raise ValueError(f"season {self.name!r}: sessions must be in order, non-empty and not overlap")
        return self

    def contains(self, month_day: str) -> bool:
        if self.first <= self.last:
            return self.first <= month_day <= self.last
        return month_day >= self.first or month_day <= self.last  # the season spans the new year


class OfficeSchedule(BaseModel):
    """Seasons of office sessions; together the seasons cover every day of the year exactly once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seasons: list[Season] = Field(min_length=1)

    @model_validator(mode="after")
    def _partition_of_year(self) -> OfficeSchedule:
        day = date(_LEAP_YEAR, 1, 1)
        while day.year == _LEAP_YEAR:
            owners = [season.name for season in self.seasons if season.contains(f"{day:%m-%d}")]
            if len(owners) != 1:
                raise ValueError(f"{day:%m-%d} must fall in exactly one season, found {owners or 'none'}")
            day += timedelta(days=1)
        return self

    @classmethod
    def default(cls) -> OfficeSchedule:
        return cls.model_validate(FUJIAN_SCHEDULE)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> OfficeSchedule:
        configured = environ.get(OFFICE_SCHEDULE_ENV)
        return cls.model_validate_json(configured) if configured else cls.default()

    def sessions_on(self, day: date) -> list[Session]:
        """The sessions of `day`'s season, whether or not `day` is a working day."""
        month_day = f"{day:%m-%d}"
        return next(season.sessions for season in self.seasons if season.contains(month_day))


class OfficeHours:
    """Office time: the schedule's sessions on the calendar's working days."""

    def __init__(self, calendar: WorkingCalendar, schedule: OfficeSchedule) -> None:
        self.calendar = calendar
        self.schedule = schedule
        self._cumulative: dict[int, array] = {}  # year -> office seconds before each day of the year

    @classmethod
    def from_env(cls) -> OfficeHours:
        return cls(WorkingCalendar(), OfficeSchedule.from_env())

    def working_hours_between(self, start: datetime, end: datetime) -> float:
        """Hours inside office sessions on working days between two instants; 0 when end <= start."""
        start, end = to_shanghai(start), to_shanghai(end)
        if end <= start:
            return 0.0
        whole_years = sum(self._year(year)[-1] for year in range(start.year, end.year))
        return (whole_years + self._seconds_into_year(end) - self._seconds_into_year(start)) / 3600

    def is_office_time(self, moment: datetime) -> bool:
        local = to_shanghai(moment)
        return any(opens <= local < closes for opens, closes in self._sessions_at(local.date()))

    def next_office_time(self, moment: datetime) -> datetime:
        """`moment` itself during office time, else the start of the next session (Asia/Shanghai)."""
        local = to_shanghai(moment)
        day = local.date()
        while True:  # ends: every season has a session, and an uncovered year raises
            for opens, closes in self._sessions_at(day):
                if local < closes:
                    return max(local, opens)
            day += timedelta(days=1)

    def _sessions_at(self, day: date) -> list[tuple[datetime, datetime]]:
        if not self.calendar.is_workday(day):
            return []
        return [
            (datetime.combine(day, opens, SHANGHAI), datetime.combine(day, closes, SHANGHAI))
            for opens, closes in self.schedule.sessions_on(day)
        ]

    def _day_length(self, day: date) -> float:
        return sum((closes - opens).total_seconds() for opens, closes in self._sessions_at(day))

    def _seconds_into_day(self, local: datetime) -> float:
        return sum(
            min(max((local - opens).total_seconds(), 0.0), (closes - opens).total_seconds())
            for opens, closes in self._sessions_at(local.date())
        )

    def _seconds_into_year(self, local: datetime) -> float:
        day = local.date()
        return self._year(day.year)[day.timetuple().tm_yday - 1] + self._seconds_into_day(local)

    def _year(self, year: int) -> array:
        # Built once per year, so a span of any length costs two partial days and a lookup.
        if year not in self._cumulative:
            cumulative = array("d", [0.0])
            day = date(year, 1, 1)
            while day.year == year:
                cumulative.append(cumulative[-1] + self._day_length(day))
                day += timedelta(days=1)
            self._cumulative[year] = cumulative
        return self._cumulative[year]
