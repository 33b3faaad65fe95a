"""Case clocks: how long a case has run in calendar days, working days and working hours.

Time a department reports as paused for a legal exclusion (行政许可法 第四十五条: 听证、招标、
拍卖、检验、检测、检疫、鉴定和专家评审 are not counted; 补正 and 公告 by the same practice) is
left out of all three units.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from duban.workcal.schedule import OfficeHours, to_shanghai

PAUSE_REASONS: dict[str, str] = {
    "supplement": "补正材料",
    "hearing": "听证",
    "expert_review": "专家评审",
    "public_notice": "公告",
    "inspection": "检验检测",
    "appraisal": "鉴定",
    "tender": "招标拍卖",
}


class Pause(NamedTuple):
    """A pause as reported; `resumed_at` is None while the case is still paused."""

    paused_at: datetime
    resumed_at: datetime | None
    reason: str


@dataclass(frozen=True)
class PausedInterval:
    """Excluded time after clipping to the case and merging overlapping pauses."""

    start: datetime
    end: datetime
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class CaseDurations:
    calendar_days: int
    working_days: int
    working_hours: float
    paused: tuple[PausedInterval, ...]
    ignored: tuple[Pause, ...]  # pauses with an unknown reason code: reported, not excluded


def case_durations(
    *,
    hours: OfficeHours,
    opened_at: datetime,
    closed_at: datetime | None = None,
    as_of: datetime | None = None,
    pauses: Iterable[tuple[datetime, datetime | None, str]] = (),
) -> CaseDurations:
    """Durations from `opened_at` to `closed_at`, or to `as_of` for an open case (the earlier if both).

    Days follow the counting rule (the opening date is not counted); each pause removes the
    days it covers by the same rule.
    """
    opened, end = to_shanghai(opened_at), _end_instant(closed_at, as_of)
    if end < opened:
        raise ValueError(f"the case ends ({end.isoformat()}) before it opens ({opened.isoformat()})")
    reported = [Pause(*pause) for pause in pauses]
    paused = _merge(_clip(pause, opened, end) for pause in reported if pause.reason in PAUSE_REASONS)
    calendar = hours.calendar
    return CaseDurations(
        calendar_days=_days(opened, end) - sum(_days(gap.start, gap.end) for gap in paused),
        working_days=calendar.working_days_between(opened.date(), end.date())
        - sum(calendar.working_days_between(gap.start.date(), gap.end.date()) for gap in paused),
        working_hours=sum(hours.working_hours_between(start, stop) for start, stop in _active(opened, end, paused)),
        paused=tuple(paused),
        ignored=tuple(pause for pause in reported if pause.reason not in PAUSE_REASONS),
    )


def budget_fraction(elapsed: float, allowed: float) -> float:
    """Share of the allowed time used; may exceed 1. For the case warnings at 0.5, 0.75 and 1.0 (not done yet)."""
    if allowed <= 0:
        raise ValueError(f"allowed time must be positive, got {allowed}")
    return elapsed / allowed


def _end_instant(closed_at: datetime | None, as_of: datetime | None) -> datetime:
    given = [to_shanghai(moment) for moment in (closed_at, as_of) if moment is not None]
    if not given:
        raise ValueError("give closed_at for a closed case or as_of for an open one")
    return min(given)


def _days(start: datetime, end: datetime) -> int:
    return (end.date() - start.date()).days


def _clip(pause: Pause, opened: datetime, end: datetime) -> PausedInterval | None:
    start = to_shanghai(pause.paused_at)
    stop = end if pause.resumed_at is None else to_shanghai(pause.resumed_at)  # still paused: runs to the end
    if stop < start:
        raise ValueError(f"pause {pause.reason!r} resumes ({stop.isoformat()}) before it starts ({start.isoformat()})")
    start, stop = max(start, opened), min(stop, end)
    return PausedInterval(start, stop, (pause.reason,)) if start < stop else None


def _merge(intervals: Iterable[PausedInterval | None]) -> list[PausedInterval]:
    merged: list[PausedInterval] = []
    for interval in sorted((i for i in intervals if i is not None), key=lambda i: (i.start, i.end)):
        if merged and interval.start <= merged[-1].end:
            last = merged.pop()
            reasons = last.reasons + tuple(r for r in interval.reasons if r not in last.reasons)
            interval = PausedInterval(last.start, max(last.end, interval.end), reasons)
        merged.append(interval)
    return merged


def _active(opened: datetime, end: datetime, paused: list[PausedInterval]) -> list[tuple[datetime, datetime]]:
    bounds = [opened, *(moment for gap in paused for moment in (gap.start, gap.end)), end]
    return list(zip(bounds[::2], bounds[1::2], strict=True))
