"""The plan's indicators as arithmetic: what one case contributes to an indicator, the value of a
period, whether it meets the target, and the best the period can still end with.

Plain functions over plain values, no database and no Kafka: services/metrics/store.py keeps the
running sums in PostgreSQL, this module says what they mean (docs/metrics.md has the definitions).
"""

from __future__ import annotations

import math
import re
from calendar import monthrange
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, NamedTuple

from duban.catalog import Catalog
from duban.catalog.models import Indicator
from duban.workcal import CalendarCoverageError, OfficeHours, case_durations, to_shanghai

ALL_DEPARTMENTS = "all"  # the plan-wide figure; every other department value is a department code
NEAR_LIMIT_MARGIN = 0.1  # DESIGN §5: yellow within 10 % of the limit
CLOCK_UNITS = ("calendar_days", "working_days", "working_hours")

# Which closed cases count in a ratio's numerator. The catalog states it only in prose (`definition`),
# so it is pinned here and `check_supported` refuses a ratio indicator missing from this table.
RATIO_NUMERATORS: dict[str, Callable[[CaseFacts], bool]] = {
    "instant_item_ratio": lambda case: case.handled_instantly,  # 即办件
    "zero_trip_ratio": lambda case: case.trips == 0,  # 一趟不用跑
}
CASE_AGGREGATES = ("mean", "ratio", "max")
REPORT_AGGREGATES = ("value",)


def check_supported(catalog: Catalog) -> None:
    """Refuse to start on a catalog indicator this engine cannot compute, rather than export nonsense."""
    for ind in catalog.indicators:
        if ind.feed.kind == "case":
            if ind.aggregate not in CASE_AGGREGATES:
                raise ValueError(f"indicator {ind.id}: aggregate {ind.aggregate!r} over cases is not implemented")
            if ind.aggregate == "ratio" and ind.id not in RATIO_NUMERATORS:
                raise ValueError(f"indicator {ind.id}: a ratio needs its numerator in RATIO_NUMERATORS")
            if ind.aggregate != "ratio" and ind.unit not in (*CLOCK_UNITS, "steps"):
                raise ValueError(f"indicator {ind.id}: unit {ind.unit!r} is not measured on cases")
        elif ind.aggregate not in REPORT_AGGREGATES:
            raise ValueError(f"indicator {ind.id}: a reported indicator takes the reported value")


# --- periods ---------------------------------------------------------------------------------------

_PERIOD = re.compile(r"^(\d{4})(?:-Q([1-4])|-(0[1-9]|1[0-2]))?$")


@dataclass(frozen=True)
class Period:
    """A calendar year, quarter or month (Asia/Shanghai civil dates, both ends included)."""

    key: str  # "2021", "2021-Q3", "2021-09"
    kind: Literal["year", "quarter", "month"]
    first: date
    last: date

    @classmethod
    def parse(cls, key: str) -> Period:
        match = _PERIOD.match(key)
        if not match:
            raise ValueError(f"period {key!r} is not YYYY, YYYY-Qn or YYYY-MM")
        year = int(match[1])
        if match[2]:
            first_month = 3 * int(match[2]) - 2
            return cls(key, "quarter", date(year, first_month, 1), _month_end(year, first_month + 2))
        if match[3]:
            month = int(match[3])
            return cls(key, "month", date(year, month, 1), _month_end(year, month))
        return cls(key, "year", date(year, 1, 1), date(year, 12, 31))

    def contains(self, day: date) -> bool:
        return self.first <= day <= self.last


def _month_end(year: int, month: int) -> date:
    return date(year, month, monthrange(year, month)[1])


def periods_of(day: date) -> tuple[str, str, str]:
    """The year, quarter and month a civil date falls in: a closed case counts in all three."""
    return f"{day.year}", f"{day.year}-Q{(day.month - 1) // 3 + 1}", f"{day.year}-{day.month:02d}"


# --- case clocks -----------------------------------------------------------------------------------


class Clock(NamedTuple):
    calendar_days: int
    working_days: int
    working_hours: float
    provisional: bool = False  # the case's dates reach a provisional calendar year (docs/calendar.md)

    def in_unit(self, unit: str) -> float:
        return getattr(self, unit)


@dataclass(frozen=True)
class ClockReading:
    """A case's clock, or why there is none (a date the working-day calendar does not cover)."""

    clock: Clock | None
    error: str | None = None
    uncovered_year: int | None = None


def read_clock(hours: OfficeHours, *, opened_at: datetime, pauses: Iterable[tuple[datetime, datetime | None, str]] = (),
               closed_at: datetime | None = None, as_of: datetime | None = None) -> ClockReading:
    """Durations without paused time; a year outside the calendar gives no clock and the reason,
    never a Mon–Fri guess. A case ending before it opens is bad data: ValueError."""
    try:
        durations = case_durations(hours=hours, opened_at=opened_at, closed_at=closed_at, as_of=as_of, pauses=pauses)
    except CalendarCoverageError as exc:
        return ClockReading(None, str(exc), exc.year)
    end = min(moment for moment in (closed_at, as_of) if moment is not None)
    provisional = hours.calendar.touches_provisional(civil_date(opened_at), civil_date(end))
    return ClockReading(Clock(durations.calendar_days, durations.working_days, durations.working_hours, provisional))


def civil_date(moment: datetime) -> date:
    """The Asia/Shanghai date of an instant: a case belongs to the periods of its close date."""
    return to_shanghai(moment).date()


# --- what a case contributes -----------------------------------------------------------------------


@dataclass(frozen=True)
class CaseFacts:
    """A closed case as the indicators see it."""

    case_type: str
    department: str
    closed_on: date
    steps: int
    handled_instantly: bool
    trips: int
    clock: Clock | None  # None: the calendar does not cover the case's dates


@dataclass(frozen=True)
class Sums:
    """Running sums of one indicator over one period and department: what PostgreSQL keeps."""

    n: int = 0  # measured cases (or reports received, for a reported indicator)
    total: float = 0.0  # sum of the measures (for a ratio: the cases in the numerator)
    maximum: float | None = None
    unmeasured: int = 0  # closed cases without a clock: in the population, not in the figure
    reported: float | None = None  # latest reported figure (aggregate "value")
    provisional: int = 0  # measured cases whose clock rests on a provisional calendar year

    def __add__(self, other: Sums) -> Sums:
        """Both sums together (of measured cases: a reported figure is not summed)."""
        maximum = self.maximum if other.maximum is None else other.maximum if self.maximum is None \
            else max(self.maximum, other.maximum)
        return Sums(self.n + other.n, self.total + other.total, maximum, self.unmeasured + other.unmeasured,
                    self.reported, self.provisional + other.provisional)

    def __neg__(self) -> Sums:
        """What taking these cases out again adds: a maximum cannot be un-added, so none (see the store)."""
        return Sums(-self.n, -self.total, None, -self.unmeasured, self.reported, -self.provisional)


def measure(ind: Indicator, case: CaseFacts) -> float | None:
    """The case's measure for the indicator; None when it needs a clock the case does not have."""
    if ind.aggregate == "ratio":
        return 1.0 if RATIO_NUMERATORS[ind.id](case) else 0.0
    if ind.unit == "steps":
        return float(case.steps)
    return None if case.clock is None else case.clock.in_unit(ind.unit)


def uses_clock(ind: Indicator) -> bool:
    return ind.aggregate != "ratio" and ind.unit in CLOCK_UNITS


def contribution(ind: Indicator, case: CaseFacts) -> Sums:
    value = measure(ind, case)
    if value is None:
        return Sums(unmeasured=1)
    provisional = int(uses_clock(ind) and case.clock.provisional)
    return Sums(n=1, total=value, maximum=value, provisional=provisional)


def sums_fed(indicators: Iterable[Indicator], case: CaseFacts) -> Iterator[tuple[tuple[str, str, str], Sums]]:
    """Each (indicator, period, department) whose sums a closed case feeds, and what it adds there."""
    keys = [(period, department) for period in periods_of(case.closed_on)
            for department in (case.department, ALL_DEPARTMENTS)]
    for ind in indicators:
        part = contribution(ind, case)
        for period, department in keys:
            yield (ind.id, period, department), part


# Histogram buckets in working days: the plan's targets (docs/metrics.md).
DURATION_BUCKETS = (1.0, 3.0, 5.0, 7.0, 13.0, 15.0, 50.0, 90.0, 180.0, math.inf)


def duration_bucket(working_days: float) -> float:
    """The upper bound (`le`) of the duration histogram's bucket a case falls in."""
    return next(bound for bound in DURATION_BUCKETS if working_days <= bound)


# --- a period's value and its target ---------------------------------------------------------------


def value_of(ind: Indicator, sums: Sums) -> float | None:
    """The period's figure; None (never NaN, never 0) when nothing was measured."""
    if ind.aggregate == "value":
        return sums.reported
    if sums.n == 0:
        return None
    figure = sums.maximum if ind.aggregate == "max" else sums.total / sums.n
    # Sums of float hours leave dust (4.999999999); six decimals is far below any target's grain.
    return round(figure, 6)


def meets(ind: Indicator, value: float, approx_tolerance: float) -> bool:
    if ind.comparison == "le":
        return value <= ind.target
    if ind.comparison == "ge":
        return value >= ind.target
    if ind.comparison == "between":
        return ind.target <= value <= ind.target_max
    return abs(value - ind.target) <= approx_tolerance * ind.target


def near_limit(ind: Indicator, value: float, approx_tolerance: float) -> bool:
    """Within 10 % of the limit on the side that breaks it. A range ("2到3个环节") is judged at its upper
    end: fewer steps is the direction the plan pushes, so being at 2 is no warning."""
    if ind.comparison == "le":
        return value >= ind.target * (1 - NEAR_LIMIT_MARGIN)
    if ind.comparison == "ge":
        return value <= ind.target * (1 + NEAR_LIMIT_MARGIN)
    if ind.comparison == "between":
        return value >= ind.target_max * (1 - NEAR_LIMIT_MARGIN)
    return abs(value - ind.target) >= (1 - NEAR_LIMIT_MARGIN) * approx_tolerance * ind.target


def forecast(ind: Indicator, sums: Sums, open_clocks: Sequence[Clock | None]) -> float | None:
    """The most favourable value the period can still end with, given the cases known now: each open
    case counts as closing in the period, and its clock can only grow from its current age.

    None where the known cases bound nothing: a reported figure, a mean or max that must stay above
    a floor (ages grow without limit), an approximate target."""
    if ind.aggregate == "value" or ind.comparison == "approx":
        return None
    if not open_clocks:
        return value_of(ind, sums)
    lower_is_better = ind.comparison in ("le", "between")
    if ind.aggregate == "ratio":
        # The open cases' outcome is unknown: count them all in the numerator, or all outside it.
        extra = len(open_clocks) if not lower_is_better else 0
        return round((sums.total + extra) / (sums.n + len(open_clocks)), 6)
    if not lower_is_better:
        return None
    if ind.aggregate == "max":
        return sums.maximum  # the open cases' steps are not known yet; they can only add
    ages = [clock.in_unit(ind.unit) for clock in open_clocks if clock is not None]
    if sums.n + len(ages) == 0:
        return None
    return round((sums.total + sum(ages)) / (sums.n + len(ages)), 6)


Light = Literal["green", "yellow", "red"]


@dataclass(frozen=True)
class Figure:
    """One indicator for one period and department, as published on the API and /metrics."""

    indicator: str
    period: str
    department: str
    unit: str
    value: float | None
    samples: int
    unmeasured: int
    open_cases: int
    target: float
    target_max: float | None
    compliant: bool | None  # None when nothing was measured
    forecast: float | None
    certain_breach: bool
    light: Light | None
    as_of: datetime | None
    provisional: bool = False  # a clock behind the value or forecast rests on a provisional calendar year
    aspiration: float | None = None  # the better value the plan names beside the target, shown only


def evaluate(ind: Indicator, *, period: str, department: str, sums: Sums, open_clocks: Sequence[Clock | None],
             approx_tolerance: float, as_of: datetime | None) -> Figure:
    """`open_clocks`: the open cases' current clocks when the period is still running, else empty
    (an open case belongs to the period it will close in, which is not an ended one)."""
    value = value_of(ind, sums)
    best = forecast(ind, sums, open_clocks)
    compliant = None if value is None else meets(ind, value, approx_tolerance)
    certain_breach = best is not None and not meets(ind, best, approx_tolerance)
    if value is None:
        light = "yellow" if certain_breach else None
    elif not compliant:
        light = "red"
    elif certain_breach or near_limit(ind, value, approx_tolerance):
        light = "yellow"
    else:
        light = "green"
    provisional = sums.provisional > 0 or (uses_clock(ind) and any(c and c.provisional for c in open_clocks))
    return Figure(
        indicator=ind.id, period=period, department=department, unit=ind.unit, value=value, samples=sums.n,
        unmeasured=sums.unmeasured, open_cases=len(open_clocks), target=ind.target, target_max=ind.target_max,
        compliant=compliant, forecast=best, certain_breach=certain_breach, light=light, as_of=as_of,
        provisional=provisional, aspiration=ind.aspiration)


def build_figures(catalog: Catalog, sums: Mapping[tuple[str, str, str], tuple[Sums, datetime | None]],
                  open_clocks: Mapping[tuple[str, str], Sequence[Clock | None]], *, today: date,
                  periods: Iterable[str], approx_tolerance: float) -> list[Figure]:
    """Figures for every stored (indicator, period, department) row, plus the plan-wide figure of each
    indicator in `periods` and each department with open cases in a running period, even when nothing
    has closed there yet (samples 0, no value)."""
    periods = [Period.parse(key) for key in periods]
    keys = set(sums) | {(ind.id, p.key, ALL_DEPARTMENTS) for ind in catalog.indicators for p in periods}
    for case_type, department in open_clocks:
        keys |= {(ind.id, p.key, department) for ind in catalog.indicators_for_case_type(case_type)
                 for p in periods if p.contains(today)}
    result = []
    for indicator_id, period_key, department in sorted(keys):
        ind = catalog.indicator(indicator_id)
        running = ind.feed.kind == "case" and Period.parse(period_key).contains(today)
        stored, as_of = sums.get((indicator_id, period_key, department), (Sums(), None))
        result.append(evaluate(
            ind, period=period_key, department=department, sums=stored, approx_tolerance=approx_tolerance,
            open_clocks=open_clocks.get((ind.feed.case_type, department), ()) if running else (), as_of=as_of))
    return result
