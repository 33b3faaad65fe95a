"""Chinese working-day calendar: statutory holidays off, 调休 weekend days worked.

Data comes from the `chinese_calendar` package for the years it covers and from committed
extension files (`contracts/calendar/<year>.yaml`) for the years it does not cover yet or
that need a correction. The years after the last covered one (`DUBAN_CALENDAR_PROVISIONAL_YEARS`,
default 2) are derived from the statutory holidays and flagged provisional (duban/workcal/provisional.py)
until their official schedule arrives. A date beyond those raises `CalendarCoverageError`: silently
treating it as Mon–Fri would shift every deadline around a holiday.
"""

from __future__ import annotations

import bisect
import hashlib
import os
from array import array
from collections import Counter
from collections.abc import Collection, Container, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from importlib.metadata import version as package_version
from pathlib import Path

import chinese_calendar
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from duban.workcal import provisional

# The contracts folder (plan files, calendar/) to read instead of the repository's.
CONTRACTS_DIR_ENV = "DUBAN_CONTRACTS_DIR"
# A folder of yearly schedule files to use instead of <contracts>/calendar.
CALENDAR_DIR_ENV = "DUBAN_CALENDAR_DIR"
# How many years past the last official one are derived from the statutory holidays (docs/calendar.md).
PROVISIONAL_YEARS_ENV = "DUBAN_CALENDAR_PROVISIONAL_YEARS"
DEFAULT_PROVISIONAL_YEARS = 2
PACKAGE_ORIGIN = f"chinesecalendar {package_version('chinesecalendar')}"
_REPO_CONTRACTS_DIR = Path(__file__).resolve().parents[2] / "contracts"


class CalendarCoverageError(LookupError):
    """No holiday data for `year`: neither the package nor an extension file covers it, and it is
    beyond the provisional years."""

    def __init__(self, year: int) -> None:
        super().__init__(
            f"no working-day data for {year}: add contracts/calendar/{year}.yaml from the State Council "
            f"notice or upgrade chinesecalendar (see docs/calendar.md)"
        )
        self.year = year


class CalendarDataError(ValueError):
    """An extension file is malformed or contradicts itself; the message names the file."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class HolidaySpan(_Strict):
    name: str = Field(min_length=1)
    first: date = Field(alias="from")
    last: date = Field(alias="to")

    def days(self) -> Iterator[date]:
        return (self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1))


class AdjustedWorkday(_Strict):
    name: str = Field(min_length=1)
    date: date

    @field_validator("date")
    @classmethod
    def _weekend_only(cls, value: date) -> date:
        # Mon–Fri are working days anyway; listing one means the notice was misread.
        if value.weekday() < 5:
            raise ValueError(f"{value} is a {value:%A}; only Saturdays and Sundays can be 调休 working days")
        return value


class CalendarFile(_Strict):
    """One extension file: a year's holidays and 调休 working days from the State Council notice."""

    year: int
    source: str = Field(min_length=1)
    holidays: list[HolidaySpan]
    workdays: list[AdjustedWorkday] = []

    def holiday_dates(self) -> list[date]:
        return [day for span in self.holidays for day in span.days()]

    def workday_dates(self) -> list[date]:
        return [entry.date for entry in self.workdays]


@dataclass(frozen=True)
class YearCoverage:
    year: int
    origin: str  # the package and its version, the extension file's name, or the provisional rules
    notice: str | None  # the State Council notice an extension file cites
    overrides_package: bool = False
    provisional: bool = False  # derived from the law: no 补假, no 调休; replaced when the notice arrives
    checksum: str | None = None  # an extension file's data digest, as in the calendar version


@dataclass(frozen=True, slots=True)
class _Year:
    """Precomputed working days of one year, so lookups and spans cost O(1)."""

    year: int
    first_ordinal: int
    flags: bytes  # 1 = working day, indexed by day of year (0-based)
    cumulative: array  # cumulative[i] = working days among the first i days of the year
    before: int  # working days in the covered years before this one in the same unbroken run
    run: int  # first year of the unbroken run of covered years this year belongs to

    @property
    def total(self) -> int:
        return self.cumulative[-1]

    def count_through(self, day: date) -> int:
        return self.before + self.cumulative[day.toordinal() - self.first_ordinal + 1]


def default_data_dir() -> Path:
    if calendar_dir := os.environ.get(CALENDAR_DIR_ENV):
        return Path(calendar_dir)
    return Path(os.environ.get(CONTRACTS_DIR_ENV) or _REPO_CONTRACTS_DIR) / "calendar"


def default_provisional_years() -> int:
    return int(os.environ.get(PROVISIONAL_YEARS_ENV) or DEFAULT_PROVISIONAL_YEARS)


def load_calendar_file(path: Path) -> CalendarFile:
    try:
        data = CalendarFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, ValidationError) as error:
        raise CalendarDataError(path, str(error)) from error
    _check_consistency(path, data)
    return data


def _check_consistency(path: Path, data: CalendarFile) -> None:
    if path.stem != str(data.year):
        raise CalendarDataError(path, f"states year {data.year}; the file must be named {data.year}.yaml")
    for span in data.holidays:
        if span.first > span.last:
            raise CalendarDataError(path, f"holiday {span.name!r} ends ({span.last}) before it starts ({span.first})")
    holidays, workdays = data.holiday_dates(), data.workday_dates()
    outside = sorted(day for day in holidays + workdays if day.year != data.year)
    if outside:
        raise CalendarDataError(path, f"dates outside {data.year}: {', '.join(map(str, outside))}")
    for label, days in (("holiday", holidays), ("working day", workdays)):
        repeated = sorted(day for day, times in Counter(days).items() if times > 1)
        if repeated:
            raise CalendarDataError(path, f"{label} dates listed twice: {', '.join(map(str, repeated))}")
    both = sorted(set(holidays) & set(workdays))
    if both:
        raise CalendarDataError(path, f"dates both holiday and working day: {', '.join(map(str, both))}")


def _year_days(year: int) -> list[date]:
    first = date(year, 1, 1)
    return [first + timedelta(days=i) for i in range((date(year + 1, 1, 1) - first).days)]


def _flags(year: int, holidays: Container[date], workdays: Container[date]) -> bytes:
    # The rule of chinese_calendar.is_workday, applied to its data tables directly: calling it per
    # day rescans the whole table for its bounds check and makes start-up take about a second.
    return bytes(day in workdays or (day.weekday() < 5 and day not in holidays) for day in _year_days(year))


def _package_years() -> range:
    # The same bounds chinese_calendar itself enforces before raising NotImplementedError.
    years = {day.year for day in chinese_calendar.holidays}
    return range(min(years), max(years) + 1)


PACKAGE_YEARS = _package_years()


def _digest(files: list[CalendarFile]) -> str:
    # The parsed data rather than the bytes: comments and layout stay out of the version.
    digest = hashlib.sha256()
    for data in files:
        digest.update(data.model_dump_json().encode())
    return digest.hexdigest()[:12]


def _provisional_years(official: Collection[int], ahead: int) -> tuple[int, ...]:
    """The years without official data from the first official year through `ahead` years past the last."""
    years = sorted(official)
    if not years or ahead <= 0:
        return ()
    return tuple(year for year in range(years[0], years[-1] + ahead + 1) if year not in official)


def provisional_rest_days(year: int) -> set[date]:
    """The statutory holidays the law gives `year` (weekend ones stay weekend rest days: no 补假 guessed)."""
    return {day for days in provisional.statutory_holidays(year).values() for day in days}


class WorkingCalendar:
    """Working days in Asia/Shanghai civil dates.

    Counting follows 民法典 第二百零一条: the start day is not counted, so the working days
    between two dates are those after the start date up to and including the end date.
    """

    def __init__(self, data_dir: Path | str | None = None, provisional_years: int | None = None) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        if not self.data_dir.is_dir():
            raise FileNotFoundError(
                f"calendar data directory {self.data_dir} does not exist "
                f"(set {CONTRACTS_DIR_ENV} to the contracts/ directory)"
            )
        files = {data.year: (path, data) for path, data in self._load_files()}
        flags = {
            year: _flags(year, chinese_calendar.holidays, chinese_calendar.workdays)
            for year in PACKAGE_YEARS
            if year not in files
        }
        flags |= {
            year: _flags(year, set(data.holiday_dates()), set(data.workday_dates()))
            for year, (_, data) in files.items()
        }
        ahead = default_provisional_years() if provisional_years is None else provisional_years
        self.provisional_years = _provisional_years(flags, ahead)
        flags |= {year: _flags(year, provisional_rest_days(year), ()) for year in self.provisional_years}
        self._coverage = self._describe(files, self.provisional_years)
        self._years = self._index(flags)
        self.version = self._fingerprint(files, self.provisional_years)

    def _load_files(self) -> list[tuple[Path, CalendarFile]]:
        return [(path, load_calendar_file(path)) for path in sorted(self.data_dir.glob("*.yaml"))]

    @staticmethod
    def _describe(files: dict[int, tuple[Path, CalendarFile]], provisional_years: tuple[int, ...]
                  ) -> list[YearCoverage]:
        coverage = {year: YearCoverage(year, PACKAGE_ORIGIN, None) for year in PACKAGE_YEARS}
        for year, (path, data) in files.items():
            coverage[year] = YearCoverage(year, path.name, data.source, overrides_package=year in PACKAGE_YEARS,
                                          checksum=_digest([data]))
        for year in provisional_years:
            coverage[year] = YearCoverage(year, provisional.ORIGIN, provisional.rule_set_for(year).name,
                                          provisional=True)
        return [coverage[year] for year in sorted(coverage)]

    @staticmethod
    def _index(flags: dict[int, bytes]) -> dict[int, _Year]:
        years: dict[int, _Year] = {}
        run, before = 0, 0
        for year in sorted(flags):
            if year - 1 not in years:
                run, before = year, 0
            cumulative = array("I", [0])
            for flag in flags[year]:
                cumulative.append(cumulative[-1] + flag)
            years[year] = _Year(year, date(year, 1, 1).toordinal(), flags[year], cumulative, before, run)
            before += cumulative[-1]
        return years

    @staticmethod
    def _fingerprint(files: dict[int, tuple[Path, CalendarFile]], provisional_years: tuple[int, ...]) -> str:
        # Recorded with computed results so a later data correction can be traced: the package
        # version, a digest of the extension files and the provisional years. An official year
        # arriving changes it (a file digest or the package version, and the provisional list).
        version = PACKAGE_ORIGIN
        if files:
            version += f"+files.{_digest([files[year][1] for year in sorted(files)])}"
        if provisional_years:
            version += f"+provisional.{'.'.join(map(str, provisional_years))}"
        return version

    def _year(self, day: date) -> _Year:
        if isinstance(day, datetime):
            # A datetime's own date may not be the Asia/Shanghai civil date; make the caller choose.
            raise TypeError("expected a civil date, got a datetime; convert it to an Asia/Shanghai date first")
        try:
            return self._years[day.year]
        except KeyError:
            raise CalendarCoverageError(day.year) from None

    def covered_years(self) -> list[int]:
        """Years with official data (package or extension file); provisional years are not covered."""
        return [year for year in self._years if year not in self.provisional_years]

    def coverage_report(self) -> list[YearCoverage]:
        return list(self._coverage)

    def is_covered(self, year: int) -> bool:
        """Whether `year` has official data. A provisional year answers questions but is not covered."""
        return year in self._years and year not in self.provisional_years

    def is_provisional(self, year: int) -> bool:
        return year in self.provisional_years

    def provisional_between(self, start: date, end: date) -> tuple[int, ...]:
        """The provisional years an answer about the dates from `start` to `end` (either order) rests on."""
        first, last = sorted((start.year, end.year))
        return tuple(year for year in self.provisional_years if first <= year <= last)

    def touches_provisional(self, start: date, end: date) -> bool:
        return bool(self.provisional_between(start, end))

    def is_workday(self, day: date) -> bool:
        year = self._year(day)
        return bool(year.flags[day.toordinal() - year.first_ordinal])

    def working_days_between(self, start: date, end: date) -> int:
        """Working days d with start < d <= end; 0 when end <= start."""
        first, last = self._year(start), self._year(end)
        if end <= start:
            return 0
        if first.run != last.run:
            raise CalendarCoverageError(self._first_gap(start.year, end.year))
        return last.count_through(end) - first.count_through(start)

    def add_working_days(self, start: date, n: int) -> date:
        """The n-th working day after `start` (the deadline of an n-working-day limit); `start` when n is 0."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        year = self._year(start)
        if n == 0:
            return start
        target = year.count_through(start) + n
        while target > year.before + year.total:
            year = self._year(date(year.year + 1, 1, 1))
        index = bisect.bisect_left(year.cumulative, target - year.before) - 1
        return date.fromordinal(year.first_ordinal + index)

    def _first_gap(self, first_year: int, last_year: int) -> int:
        return next(year for year in range(first_year, last_year + 1) if year not in self._years)
