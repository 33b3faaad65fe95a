"""fold_case: a case's state from its events, the same whatever order and repetitions they arrive in."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from duban.events.models import TrackedCaseCancelled, TrackedCaseClosed, TrackedCaseOpened
from services.tracker.domain.cases import (
    Announced,
    Announcement,
    CaseEvent,
    CaseState,
    announcements,
    fold_case,
    state_as_json,
)

T0 = datetime(2021, 9, 15, 1, 0, tzinfo=timezone.utc)
TYPE = "export_tax_refund"
CASE_OPENED, CASE_CLOSED, CASE_CANCELLED = TrackedCaseOpened, TrackedCaseClosed, TrackedCaseCancelled


def ev(kind: str, minutes: int, n: int, **data) -> CaseEvent:
    return CaseEvent("/departments/tax-bureau", f"e{n:03d}", kind, T0 + timedelta(minutes=minutes),
                     {"case_type": TYPE, **data})


def closed(minutes: int, n: int, trips: int = 0) -> CaseEvent:
    return ev("closed", minutes, n, outcome="completed", handled_instantly=False, trips=trips)


@st.composite
def case_histories(draw) -> list[CaseEvent]:
    """A realistic life of a case in event-time order: opened, steps and pauses, then maybe an end,
    with some events at the same instant and a few that the fold must ignore."""
    n = iter(range(1000))
    minute = 0
    events = [ev("opened", minute, next(n), reference="REF-1")]
    for _ in range(draw(st.integers(0, 6))):
        minute += draw(st.sampled_from([0, 0, 1, 60, 1440]))
        kind = draw(st.sampled_from(["step", "pause", "resume", "noise_resume", "noise_pause"]))
        if kind == "step":
            events.append(ev("step_completed", minute, next(n), step=draw(st.sampled_from(["accept", "review", "pay"]))))
        elif kind in ("pause", "noise_pause"):
            events.append(ev("paused", minute, next(n), reason=draw(st.sampled_from(["supplement", "expert_review"]))))
        else:
            events.append(ev("resumed", minute, next(n), reason="supplement"))
    minute += draw(st.sampled_from([0, 1, 600]))
    end = draw(st.sampled_from([None, "closed", "cancelled"]))
    if end == "closed":
        events.append(closed(minute, next(n), trips=draw(st.integers(0, 2))))
    elif end == "cancelled":
        events.append(ev("cancelled", minute, next(n), reason="applicant withdrew"))
    if draw(st.booleans()):  # something after the end, which changes nothing
        events.append(ev("step_completed", minute + 5, next(n), step="late"))
    return events


@settings(max_examples=300, deadline=None)
@given(data=st.data(), history=case_histories())
def test_any_arrival_order_with_duplicates_folds_to_the_in_order_state(data, history):
    in_order = fold_case("tax-bureau", "C1", history)
    arrived = data.draw(st.permutations(history + data.draw(st.lists(st.sampled_from(history), max_size=5))))
    assert fold_case("tax-bureau", "C1", arrived) == in_order


@settings(max_examples=200, deadline=None)
@given(data=st.data(), history=case_histories())
def test_announcing_step_by_step_ends_with_what_in_order_announces(data, history):
    """Whatever the arrival order, the last announcement of each kind equals the in-order one."""
    final = fold_case("tax-bureau", "C1", history)
    _, expected = announcements(final, Announced())
    arrived = data.draw(st.permutations(history))
    announced, seen = Announced(), []
    for i in range(1, len(arrived) + 1):
        due, announced = announcements(fold_case("tax-bureau", "C1", arrived[:i]), announced)
        seen.extend(due)
    assert announced == expected
    if final.ended:
        assert seen[-1].model in (CASE_CLOSED, CASE_CANCELLED) and seen[-1].data == expected.end["data"]


def test_close_before_open_is_held_until_the_opening_arrives():
    close = closed(600, 2)
    state = fold_case("tax-bureau", "C1", [close])
    assert state.status == "closed" and state.problem == "no opening event yet"
    assert announcements(state, Announced()) == ([], Announced())
    state = fold_case("tax-bureau", "C1", [close, ev("opened", 0, 1)])
    due, _ = announcements(state, Announced())
    assert [a.model for a in due] == [CASE_OPENED, CASE_CLOSED]


def test_resume_before_pause_and_a_late_pause_correct_the_closed_case():
    opened, close = ev("opened", 0, 1), closed(3000, 4)
    _, announced = announcements(fold_case("tax-bureau", "C1", [opened, close]), Announced())
    assert announced.end["data"]["paused_intervals"] == []
    resume, pause = ev("resumed", 1500, 3, reason="supplement"), ev("paused", 60, 2, reason="supplement")
    state = fold_case("tax-bureau", "C1", [opened, close, resume])
    assert [i.why for i in state.ignored] == ["the clock was not paused"]
    state = fold_case("tax-bureau", "C1", [opened, close, resume, pause])
    due, announced = announcements(state, announced)
    assert [a.model for a in due] == [CASE_CLOSED]  # the correction
    assert due[0].data["paused_intervals"] == [
        {"from": "2021-09-15T02:00:00Z", "to": "2021-09-16T02:00:00Z", "reason": "supplement"}]
    assert announcements(state, announced) == ([], announced)  # nothing twice


def test_a_case_closed_while_paused_ends_the_pause_at_the_close():
    state = fold_case("tax-bureau", "C1", [ev("opened", 0, 1), ev("paused", 10, 2, reason="hearing"), closed(90, 3)])
    assert [(i.start, i.end, i.reason) for i in state.paused_intervals] == [
        (T0 + timedelta(minutes=10), T0 + timedelta(minutes=90), "hearing")]


def test_a_resumed_case_is_no_longer_paused():
    state = fold_case("tax-bureau", "C1", [ev("opened", 0, 1), ev("paused", 10, 2, reason="hearing"),
                                           ev("resumed", 30, 3, reason="hearing")])
    assert state.paused_since is None and state.status == "open"
    assert [(i.start, i.end) for i in state.paused_intervals] == [(T0 + timedelta(minutes=10), T0 + timedelta(minutes=30))]


def test_events_of_another_case_type_and_after_the_end_change_nothing():
    other = CaseEvent("/departments/tax-bureau", "x", "step_completed", T0 + timedelta(minutes=5),
                      {"case_type": "service_item", "step": "s"})
    state = fold_case("tax-bureau", "C1", [ev("opened", 0, 1), other, closed(30, 2), ev("step_completed", 40, 3, step="a")])
    assert state.steps == () and state.status == "closed"
    assert len(state.ignored) == 2


# --- exact states: every rule of the fold, the announcements' data and the stored form ---------------


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_a_whole_case_life_folds_to_this_exact_state():
    other_type = CaseEvent("/departments/tax-bureau", "x1", "paused", at(2), {"case_type": "service_item",
                                                                                "reason": "supplement"})
    events = [
        ev("opened", 0, 1, reference="REF-1", title="退税"),
        ev("resumed", 1, 2, reason="supplement"),  # not paused: ignored
        other_type,
        ev("step_completed", 3, 3, step="accept", step_name="受理"),
        ev("paused", 10, 4, reason="supplement"),
        ev("paused", 11, 5, reason="expert_review"),  # already paused: ignored
        ev("resumed", 20, 6, reason="supplement"),
        ev("step_completed", 21, 7, step="accept"),  # already completed: ignored
        ev("step_completed", 22, 8, step="review"),
        ev("opened", 23, 9),  # already opened: ignored
        ev("paused", 30, 10, reason="expert_review"),
        ev("closed", 90, 11, outcome="completed", handled_instantly=True, trips=1),
        ev("step_completed", 95, 12, step="late"),  # after the end: ignored
    ]
    state = fold_case("tax-bureau", "C1", events)
    assert state_as_json(state) == {
        "department": "tax-bureau", "case_id": "C1", "case_type": TYPE, "status": "closed",
        "opened_at": at(0), "reference": "REF-1", "title": "退税",
        "steps": [{"step": "accept", "step_name": "受理", "at": at(3)},
                  {"step": "review", "step_name": None, "at": at(22)}],
        "paused_intervals": [{"from": at(10), "to": at(20), "reason": "supplement"},
                             {"from": at(30), "to": at(90), "reason": "expert_review"}],
        "paused_since": None, "closed_at": at(90), "cancelled_at": None,
        "outcome": "completed", "handled_instantly": True, "trips": 1, "cancel_reason": None, "problem": None,
        "ignored": [
            {"source": "/departments/tax-bureau", "event_id": "e002", "why": "the clock was not paused"},
            {"source": "/departments/tax-bureau", "event_id": "x1",
             "why": "case type service_item differs from the case's export_tax_refund"},
            {"source": "/departments/tax-bureau", "event_id": "e005", "why": "the clock was already paused"},
            {"source": "/departments/tax-bureau", "event_id": "e007", "why": "step accept was already completed"},
            {"source": "/departments/tax-bureau", "event_id": "e009", "why": "the case was already opened"},
            {"source": "/departments/tax-bureau", "event_id": "e012", "why": "after the case was closed"},
        ],
        "events": 13, "last_event_at": at(95),
    }
    due, announced = announcements(state, Announced())
    opening = {"department": "tax-bureau", "case_type": TYPE, "opened_at": "2021-09-15T01:00:00Z",
               "reference": "REF-1", "title": "退税"}
    end = {"department": "tax-bureau", "case_type": TYPE, "opened_at": "2021-09-15T01:00:00Z",
           "outcome": "completed", "closed_at": "2021-09-15T02:30:00Z", "handled_instantly": True, "trips": 1,
           "steps": 2, "paused_intervals": [
               {"from": "2021-09-15T01:10:00Z", "to": "2021-09-15T01:20:00Z", "reason": "supplement"},
               {"from": "2021-09-15T01:30:00Z", "to": "2021-09-15T02:30:00Z", "reason": "expert_review"}]}
    assert due == [Announcement(CASE_OPENED, opening), Announcement(CASE_CLOSED, end)]
    assert announced == Announced(opening, {"type": CASE_CLOSED.TYPE, "data": end})
    assert Announced.from_json(announced.as_json()) == announced
    assert announced.as_json() == {"opened": opening, "end": {"type": CASE_CLOSED.TYPE, "data": end}}


def test_a_cancelled_case_and_a_paused_open_one_in_their_stored_form():
    cancelled = fold_case("tax-bureau", "C2", [ev("opened", 0, 1), ev("paused", 5, 2, reason="hearing"),
                                               ev("cancelled", 60, 3, reason="applicant withdrew")])
    stored = state_as_json(cancelled)
    assert (stored["status"], stored["closed_at"], stored["cancelled_at"], stored["cancel_reason"]) == (
        "cancelled", None, at(60), "applicant withdrew")
    assert stored["paused_intervals"] == [{"from": at(5), "to": at(60), "reason": "hearing"}]
    assert (stored["outcome"], stored["handled_instantly"], stored["trips"]) == (None, None, None)
    due, announced = announcements(cancelled, Announced())
    assert due[-1] == Announcement(CASE_CANCELLED, {
        "department": "tax-bureau", "case_type": TYPE, "opened_at": "2021-09-15T01:00:00Z",
        "cancelled_at": "2021-09-15T02:00:00Z", "reason": "applicant withdrew"})
    assert announced.end["type"] == CASE_CANCELLED.TYPE

    paused = fold_case("tax-bureau", "C3", [ev("opened", 0, 1), ev("paused", 5, 2, reason="hearing")])
    stored = state_as_json(paused)
    assert (stored["status"], stored["paused_since"], stored["closed_at"], stored["cancelled_at"]) == (
        "paused", {"from": at(5), "reason": "hearing"}, None, None)
    due, announced = announcements(paused, Announced())
    assert [a.model for a in due] == [CASE_OPENED] and announced.end is None
    assert fold_case("tax-bureau", "C3", [ev("opened", 0, 1)]).status == "open"


def test_what_a_case_without_its_opening_is():
    assert fold_case("tax-bureau", "C4", []) == CaseState("tax-bureau", "C4")
    assert CaseState("tax-bureau", "C4").problem is None and CaseState("tax-bureau", "C4").status == "pending"
    step = CaseEvent("/departments/tax-bureau", "s", "step_completed", at(5), {"case_type": "service_item",
                                                                                "step": "accept"})
    pending = fold_case("tax-bureau", "C4", [step])
    assert (pending.status, pending.problem, pending.case_type, pending.last_event_at) == (
        "pending", "no opening event yet", "service_item", at(5))
    # The opening names the case type even when an earlier event said another.
    opened = fold_case("tax-bureau", "C4", [step, ev("opened", 9, 1)])
    assert (opened.case_type, [i.event_id for i in opened.ignored]) == (TYPE, ["s"])
    # An end dated before the opening cannot be announced.
    early = fold_case("tax-bureau", "C4", [closed(0, 1), ev("opened", 5, 2)])
    assert early.problem == "closed before it was opened"
    assert announcements(early, Announced()) == ([], Announced())
    # At one instant the opening comes first and the end last.
    same = fold_case("tax-bureau", "C5", [closed(0, 1), ev("step_completed", 0, 2, step="a"), ev("opened", 0, 3)])
    assert (same.problem, same.status, [s.step for s in same.steps]) == (None, "closed", ["a"])
