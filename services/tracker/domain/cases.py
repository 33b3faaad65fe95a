"""A case's state as a fold over its events, and what the tracker announces about it.

Department events may arrive late, twice or out of order (a close before its opening, a resume
before its pause). The tracker keeps every event of a case and derives the state by folding them
sorted by event time with a deterministic tie-break, so any arrival order of the same set of events
gives the same state as in-order delivery."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from duban.events.models import (
    CaseCancelled,
    CaseClosed,
    CaseOpened,
    CasePaused,
    CaseResumed,
    CaseStepCompleted,
    DepartmentEvent,
    TrackedCaseCancelled,
    TrackedCaseClosed,
    TrackedCaseOpened,
    TrackerEvent,
)
from services.tracker.domain.instants import utc

# The department events of a case's life and the kind each is in the fold.
CASE_KINDS: dict[type[DepartmentEvent], str] = {
    CaseOpened: "opened",
    CaseStepCompleted: "step_completed",
    CasePaused: "paused",
    CaseResumed: "resumed",
    CaseClosed: "closed",
    CaseCancelled: "cancelled",
}
KINDS = {model.TYPE: kind for model, kind in CASE_KINDS.items()}
# Events at the same instant: the opening first and the end last; a resume before a pause, so that
# "resumed supplement, paused for expert review" at one instant gives two intervals, not one.
_RANK = {"opened": 0, "resumed": 1, "step_completed": 2, "paused": 3, "closed": 4, "cancelled": 5}


@dataclass(frozen=True)
class CaseEvent:
    source: str
    event_id: str
    kind: str  # a value of KINDS
    time: datetime
    data: dict

    @property
    def order(self) -> tuple:
        return (self.time, _RANK[self.kind], self.source, self.event_id)


@dataclass(frozen=True)
class Step:
    step: str
    at: datetime
    name: str | None = None


@dataclass(frozen=True)
class Interval:
    start: datetime
    end: datetime
    reason: str


@dataclass(frozen=True)
class Ignored:
    """An event kept in the case's record that does not change its state, and why."""

    source: str
    event_id: str
    why: str


@dataclass(frozen=True)
class CaseState:
    department: str
    case_id: str
    case_type: str | None = None
    opened_at: datetime | None = None
    reference: str | None = None
    title: str | None = None
    steps: tuple[Step, ...] = ()
    paused_intervals: tuple[Interval, ...] = ()
    paused_since: tuple[datetime, str] | None = None  # (from, reason) of a pause not yet resumed
    ended: str | None = None  # "closed" or "cancelled"
    ended_at: datetime | None = None
    outcome: str | None = None
    handled_instantly: bool | None = None
    trips: int | None = None
    cancel_reason: str | None = None
    ignored: tuple[Ignored, ...] = ()
    events: int = 0
    last_event_at: datetime | None = None

    @property
    def status(self) -> str:
        if self.ended:
            return self.ended
        if self.paused_since:
            return "paused"
        return "open" if self.opened_at else "pending"  # pending: events known, opening not yet

    @property
    def problem(self) -> str | None:
        """Why the case cannot be announced as it stands, if it cannot."""
        if self.opened_at is None:
            return "no opening event yet" if self.events else None
        if self.ended_at is not None and self.ended_at < self.opened_at:
            return f"{self.ended} before it was opened"
        return None


def _case_type_of(events: list[CaseEvent]) -> str:
    # The opening names the case type; before it arrives, the earliest event does.
    opening = next((e for e in events if e.kind == "opened"), None)
    return (opening or events[0]).data["case_type"]


def fold_case(department: str, case_id: str, events: Iterable[CaseEvent]) -> CaseState:
    """The state of a case from its events, whatever order and repetitions they came in."""
    unique = sorted({(e.source, e.event_id): e for e in events}.values(), key=lambda e: e.order)
    if not unique:
        return CaseState(department, case_id)
    fold = _Fold(_case_type_of(unique))
    for event in unique:
        fold.step(event)
    return CaseState(department, case_id, fold.case_type, fold.opened_at, fold.reference, fold.title,
                     tuple(fold.steps), tuple(fold.paused_intervals), fold.paused_since, fold.ended, fold.ended_at,
                     fold.outcome, fold.handled_instantly, fold.trips, fold.cancel_reason, tuple(fold.ignored),
                     len(unique), unique[-1].time)


class _Fold:
    """CaseState's fields while the events are applied: one object changed in place, not a new frozen
    state per event (copying every field of every intermediate state was most of the fold's cost)."""

    __slots__ = ("case_type", "opened_at", "reference", "title", "steps", "paused_intervals", "paused_since",
                 "ended", "ended_at", "outcome", "handled_instantly", "trips", "cancel_reason", "ignored")

    def __init__(self, case_type: str) -> None:
        self.case_type = case_type
        self.opened_at = self.reference = self.title = self.paused_since = self.ended = self.ended_at = None
        self.outcome = self.handled_instantly = self.trips = self.cancel_reason = None
        self.steps: list[Step] = []
        self.paused_intervals: list[Interval] = []
        self.ignored: list[Ignored] = []

    def ignore(self, e: CaseEvent, why: str) -> None:
        self.ignored.append(Ignored(e.source, e.event_id, why))

    def step(self, e: CaseEvent) -> None:
        data, kind = e.data, e.kind
        if data["case_type"] != self.case_type:
            return self.ignore(e, f"case type {data['case_type']} differs from the case's {self.case_type}")
        if kind == "opened":
            if self.opened_at is not None:
                return self.ignore(e, "the case was already opened")
            self.opened_at, self.reference, self.title = e.time, data.get("reference"), data.get("title")
            return None
        if self.ended:
            return self.ignore(e, f"after the case was {self.ended}")
        if kind == "step_completed":
            if any(step.step == data["step"] for step in self.steps):
                return self.ignore(e, f"step {data['step']} was already completed")
            self.steps.append(Step(data["step"], e.time, data.get("step_name")))
        elif kind == "paused":
            if self.paused_since:
                return self.ignore(e, "the clock was already paused")
            self.paused_since = (e.time, data["reason"])
        elif kind == "resumed":
            if not self.paused_since:
                return self.ignore(e, "the clock was not paused")
            self.paused_intervals.append(Interval(self.paused_since[0], e.time, self.paused_since[1]))
            self.paused_since = None
        else:  # closed or cancelled: the clock stops, a pause still running ends with it.
            if self.paused_since:
                self.paused_intervals.append(Interval(self.paused_since[0], e.time, self.paused_since[1]))
            self.ended, self.ended_at, self.paused_since = kind, e.time, None
            if kind == "closed":
                self.outcome, self.handled_instantly, self.trips = data["outcome"], data["handled_instantly"], data["trips"]
            else:
                self.cancel_reason = data["reason"]
        return None


# --- announcements ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Announced:
    """What the tracker last announced about a case: the data of its opening and of its end."""

    opened: dict | None = None
    end: dict | None = None  # {"type": ..., "data": ...}

    def as_json(self) -> dict:
        return {"opened": self.opened, "end": self.end}

    @classmethod
    def from_json(cls, value: dict | None) -> Announced:
        return cls(**value) if value else cls()


@dataclass(frozen=True)
class Announcement:
    model: type[TrackerEvent]
    data: dict


def opened_data(s: CaseState) -> dict:
    data = {"department": s.department, "case_type": s.case_type, "opened_at": utc(s.opened_at)}
    return data | {k: v for k, v in (("reference", s.reference), ("title", s.title)) if v is not None}


def end_data(s: CaseState) -> dict:
    common = {"department": s.department, "case_type": s.case_type, "opened_at": utc(s.opened_at)}
    if s.ended == "cancelled":
        return common | {"cancelled_at": utc(s.ended_at), "reason": s.cancel_reason}
    return common | {
        "outcome": s.outcome, "closed_at": utc(s.ended_at), "handled_instantly": s.handled_instantly,
        "trips": s.trips, "steps": len(s.steps),
        "paused_intervals": [{"from": utc(i.start), "to": utc(i.end), "reason": i.reason}
                             for i in sorted(s.paused_intervals, key=lambda i: (i.start, i.end, i.reason))],
    }


def announcements(state: CaseState, announced: Announced) -> tuple[list[Announcement], Announced]:
    """The change events due for `state`, given what was announced before, and the new record of it.

    The opening is announced once it is known; the end when the case closes or is cancelled, and
    again whenever a late event changes what was announced (a late pause, an earlier cancel): the
    latest announcement of a case supersedes the earlier ones."""
    if state.problem or state.opened_at is None:
        return [], announced
    out: list[Announcement] = []
    opening = opened_data(state)
    if opening != announced.opened:
        out.append(Announcement(TrackedCaseOpened, opening))
    end = None
    if state.ended:
        model = TrackedCaseClosed if state.ended == "closed" else TrackedCaseCancelled
        end = {"type": model.TYPE, "data": end_data(state)}
        if end != announced.end:
            out.append(Announcement(model, end["data"]))
    return out, Announced(opening, end or announced.end)


# --- storage form -------------------------------------------------------------------------------


def state_as_json(s: CaseState) -> dict:
    """The state as the API shows it and the store keeps it."""
    return {
        "department": s.department, "case_id": s.case_id, "case_type": s.case_type, "status": s.status,
        "opened_at": s.opened_at, "reference": s.reference, "title": s.title,
        "steps": [{"step": x.step, "step_name": x.name, "at": x.at} for x in s.steps],
        "paused_intervals": [{"from": i.start, "to": i.end, "reason": i.reason} for i in s.paused_intervals],
        "paused_since": ({"from": s.paused_since[0], "reason": s.paused_since[1]} if s.paused_since else None),
        "closed_at": s.ended_at if s.ended == "closed" else None,
        "cancelled_at": s.ended_at if s.ended == "cancelled" else None,
        "outcome": s.outcome, "handled_instantly": s.handled_instantly, "trips": s.trips,
        "cancel_reason": s.cancel_reason, "problem": s.problem,
        "ignored": [{"source": i.source, "event_id": i.event_id, "why": i.why} for i in s.ignored],
        "events": s.events, "last_event_at": s.last_event_at,
    }
