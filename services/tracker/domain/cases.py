"""A case's state as a fold over its events, and what the tracker announces about it.

Department events may arrive late, twice or out of order (a close before its opening, a resume
before its pause). The tracker keeps every event of a case and derives the state by folding them
sorted by event time with a deterministic tie-break, so any arrival order of the same set of events
gives the same state as in-order delivery."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
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
    state = CaseState(department, case_id, events=len(unique))
    if not unique:
        return state
    state = replace(state, case_type=_case_type_of(unique), last_event_at=unique[-1].time)
    for event in unique:
        state = _step(state, event)
    return state


def _ignore(state: CaseState, event: CaseEvent, why: str) -> CaseState:
    return replace(state, ignored=(*state.ignored, Ignored(event.source, event.event_id, why)))


def _step(s: CaseState, e: CaseEvent) -> CaseState:
    if e.data["case_type"] != s.case_type:
        return _ignore(s, e, f"case type {e.data['case_type']} differs from the case's {s.case_type}")
    if e.kind == "opened":
        if s.opened_at is not None:
            return _ignore(s, e, "the case was already opened")
        return replace(s, opened_at=e.time, reference=e.data.get("reference"), title=e.data.get("title"))
    if s.ended:
        return _ignore(s, e, f"after the case was {s.ended}")
    if e.kind == "step_completed":
        if any(step.step == e.data["step"] for step in s.steps):
            return _ignore(s, e, f"step {e.data['step']} was already completed")
        return replace(s, steps=(*s.steps, Step(e.data["step"], e.time, e.data.get("step_name"))))
    if e.kind == "paused":
        if s.paused_since:
            return _ignore(s, e, "the clock was already paused")
        return replace(s, paused_since=(e.time, e.data["reason"]))
    if e.kind == "resumed":
        if not s.paused_since:
            return _ignore(s, e, "the clock was not paused")
        ended = Interval(s.paused_since[0], e.time, s.paused_since[1])
        return replace(s, paused_since=None, paused_intervals=(*s.paused_intervals, ended))
    # closed or cancelled: the clock stops, a pause still running ends with it.
    intervals = s.paused_intervals + ((Interval(s.paused_since[0], e.time, s.paused_since[1]),) if s.paused_since else ())
    s = replace(s, ended=e.kind, ended_at=e.time, paused_since=None, paused_intervals=intervals)
    if e.kind == "closed":
        return replace(s, outcome=e.data["outcome"], handled_instantly=e.data["handled_instantly"], trips=e.data["trips"])
    return replace(s, cancel_reason=e.data["reason"])


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
