"""部门 scorecard and ranking: per lead or responsible unit, how its milestones kept their dates, what is
overdue, which of its indicator figures meet their targets, and how fast it answers an escalation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from statistics import fmean
from zoneinfo import ZoneInfo

from duban.catalog import Catalog

SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Scorecard:
    code: str
    name: str
    tasks: int
    milestones_due: int  # occurrences whose date has come (or that are done)
    on_time: int  # of those, done on or before their deadline in force
    overdue: int  # occurrences past their deadline and not done
    red_tasks: int
    indicators_measured: int
    indicators_met: int
    escalations: int
    answered: int  # escalations acknowledged
    answer_hours: float | None  # mean hours from an escalation's opening to its acknowledgement

    @property
    def on_time_rate(self) -> float | None:
        return self.on_time / self.milestones_due if self.milestones_due else None

    @property
    def indicators_rate(self) -> float | None:
        return self.indicators_met / self.indicators_measured if self.indicators_measured else None


def _kept_date(occurrence: dict, today: date) -> tuple[bool, bool] | None:
    """(due, on time) of a milestone occurrence as of today; None when it is neither done nor due yet."""
    due = date.fromisoformat(occurrence["due"])
    done_at = occurrence.get("done_at")
    if done_at:
        done_on = datetime.fromisoformat(done_at).astimezone(SHANGHAI).date()
        return True, done_on <= due
    if due < today:
        return True, False
    return None


def scorecards(catalog: Catalog, tasks: list[dict], figures: list[dict], escalations: list[dict],
               today: date) -> list[Scorecard]:
    """One card per unit that leads or is responsible for a visible task.

    `tasks` are task details (with milestones); `figures` the per-department indicator figures;
    `escalations` the notifier's escalations, attributed to every unit of their task."""
    cards = []
    for department in catalog.departments:
        if department.kind != "unit":
            continue
        own = [t for t in tasks if department.code in (*t["lead"], *t["responsible"])]
        if not own:
            continue
        kept = [k for t in own for m in t["milestones"] if (k := _kept_date(m, today)) is not None]
        overdue = sum(m["status"] == "overdue" for t in own for m in t["milestones"])
        measured = [f for f in figures if f["department"] == department.code and f["compliant"] is not None]
        mine = [e for e in escalations if department.code in e["units"]]
        answered = [e for e in mine if e.get("acknowledged_at")]
        hours = [(datetime.fromisoformat(e["acknowledged_at"]) - datetime.fromisoformat(e["opened_at"]))
                 .total_seconds() / 3600 for e in answered]
        cards.append(Scorecard(
            code=department.code, name=department.name, tasks=len(own), milestones_due=len(kept),
            on_time=sum(on_time for _, on_time in kept), overdue=overdue,
            red_tasks=sum(t["light"] == "red" for t in own), indicators_measured=len(measured),
            indicators_met=sum(bool(f["compliant"]) for f in measured), escalations=len(mine),
            answered=len(answered), answer_hours=round(fmean(hours), 1) if hours else None))
    return cards


def _answer_key(card: Scorecard) -> float:
    """Hours to answer; escalations left all unanswered rank last, none at all rank first."""
    if card.answer_hours is not None:
        return card.answer_hours
    return float("inf") if card.escalations else 0.0


def ranking(cards: list[Scorecard]) -> list[tuple[int, Scorecard]]:
    """Best first: fewer overdue items, then a higher on-time rate, a higher share of indicators met, a
    faster answer to escalations; a department with nothing yet measured ranks as if it were perfect on
    that count (it has not failed). Equal cards share a rank."""
    def key(card: Scorecard) -> tuple:
        return (card.overdue, -(card.on_time_rate if card.on_time_rate is not None else 1.0),
                -(card.indicators_rate if card.indicators_rate is not None else 1.0),
                _answer_key(card))

    ordered = sorted(cards, key=lambda c: (key(c), c.code))
    ranked: list[tuple[int, Scorecard]] = []
    for position, card in enumerate(ordered, start=1):
        same = ranked and key(ranked[-1][1]) == key(card)
        ranked.append((ranked[-1][0] if same else position, card))
    return ranked
