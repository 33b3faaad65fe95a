"""fold_case: a case's state from its events, the same whatever order and repetitions they arrive in."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from services.tracker.domain.cases import (
    CASE_CANCELLED,
    CASE_CLOSED,
    CASE_OPENED,
    Announced,
    CaseEvent,
    announcements,
    fold_case,
)

T0 = datetime(2021, 9, 15, 1, 0, tzinfo=timezone.utc)
TYPE = "export_tax_refund"


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
        assert seen[-1].type in (CASE_CLOSED, CASE_CANCELLED) and seen[-1].data == expected.end["data"]


def test_close_before_open_is_held_until_the_opening_arrives():
    close = closed(600, 2)
    state = fold_case("tax-bureau", "C1", [close])
    assert state.status == "closed" and state.problem == "no opening event yet"
    assert announcements(state, Announced()) == ([], Announced())
    state = fold_case("tax-bureau", "C1", [close, ev("opened", 0, 1)])
    due, _ = announcements(state, Announced())
    assert [a.type for a in due] == [CASE_OPENED, CASE_CLOSED]


def test_resume_before_pause_and_a_late_pause_correct_the_closed_case():
    opened, close = ev("opened", 0, 1), closed(3000, 4)
    _, announced = announcements(fold_case("tax-bureau", "C1", [opened, close]), Announced())
    assert announced.end["data"]["paused_intervals"] == []
    resume, pause = ev("resumed", 1500, 3, reason="supplement"), ev("paused", 60, 2, reason="supplement")
    state = fold_case("tax-bureau", "C1", [opened, close, resume])
    assert [i.why for i in state.ignored] == ["the clock was not paused"]
    state = fold_case("tax-bureau", "C1", [opened, close, resume, pause])
    due, announced = announcements(state, announced)
    assert [a.type for a in due] == [CASE_CLOSED]  # the correction
    assert due[0].data["paused_intervals"] == [
        {"from": "2021-09-15T02:00:00Z", "to": "2021-09-16T02:00:00Z", "reason": "supplement"}]
    assert announcements(state, announced) == ([], announced)  # nothing twice


def test_a_case_closed_while_paused_ends_the_pause_at_the_close():
    state = fold_case("tax-bureau", "C1", [ev("opened", 0, 1), ev("paused", 10, 2, reason="hearing"), closed(90, 3)])
    assert [(i.start, i.end, i.reason) for i in state.paused_intervals] == [
        (T0 + timedelta(minutes=10), T0 + timedelta(minutes=90), "hearing")]


def test_events_of_another_case_type_and_after_the_end_change_nothing():
    other = CaseEvent("/departments/tax-bureau", "x", "step_completed", T0 + timedelta(minutes=5),
                      {"case_type": "service_item", "step": "s"})
    state = fold_case("tax-bureau", "C1", [ev("opened", 0, 1), other, closed(30, 2), ev("step_completed", 40, 3, step="a")])
    assert state.steps == () and state.status == "closed"
    assert len(state.ignored) == 2
