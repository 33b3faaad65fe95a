"""Case warnings (DESIGN §5): an open case warns at 50 %, 75 % and 100 % of the time its case type
allows. The allowed time is the target of each of the plan's duration indicators fed by the case
type (the mean a department must stay under is also the time each case is given), in that
indicator's unit; a case type with two (企业开办: 5 working hours and 5 working days) is as far
along as the tighter of them says."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from duban.catalog import Catalog
from duban.workcal import OfficeHours
from duban.workcal.clock import budget_fraction, case_durations

THRESHOLDS = (50, 75, 100)
CLOCK_UNITS = ("working_hours", "working_days", "calendar_days")


@dataclass(frozen=True)
class Limit:
    indicator: str
    unit: str
    allowed: float


@dataclass(frozen=True)
class Usage:
    limit: Limit
    elapsed: float

    @property
    def percent(self) -> float:
        return 100 * budget_fraction(self.elapsed, self.limit.allowed)


def case_limits(catalog: Catalog) -> dict[str, tuple[Limit, ...]]:
    """Case type → its limits: the "at most" targets of its indicators measured as a case's duration."""
    limits: dict[str, list[Limit]] = {}
    for ind in catalog.indicators:
        if ind.feed.kind == "case" and ind.unit in CLOCK_UNITS and ind.comparison == "le":
            limits.setdefault(ind.feed.case_type, []).append(Limit(ind.id, ind.unit, float(ind.target)))
    return {case_type: tuple(found) for case_type, found in limits.items()}


def usage(limits: Iterable[Limit], hours: OfficeHours, *, opened_at: datetime, now: datetime,
          pauses: Iterable[tuple[datetime, datetime | None, str]]) -> Usage:
    """How far the case is along its tightest limit as of `now` (paused time excluded)."""
    clock = case_durations(hours=hours, opened_at=opened_at, as_of=now, pauses=pauses)
    return max((Usage(limit, float(getattr(clock, limit.unit))) for limit in limits), key=lambda u: u.percent)


def newly_crossed(used: Usage, warned: Iterable[int]) -> list[int]:
    """Thresholds reached and not yet warned about, lowest first."""
    done = set(warned)
    return [t for t in THRESHOLDS if used.percent >= t and t not in done]
