"""Department events applied through the tracker's consumer path to a real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from duban.events.models import CompletionAwaitingVerification, MilestoneStatusChanged, TaskLightChanged, TaskUpdated
from tests.tracker.conftest import CATALOG, case_event, department_event, progress
from tests.tracker.test_case_fold import case_histories

LIGHT_CHANGED, MILESTONE_CHANGED, TASK_UPDATED = TaskLightChanged.TYPE, MilestoneStatusChanged.TYPE, TaskUpdated.TYPE
AWAITING_VERIFICATION = CompletionAwaitingVerification.TYPE

pytestmark = pytest.mark.database


def closed_data(trips: int = 0) -> dict:
    return {"outcome": "completed", "handled_instantly": False, "trips": trips}


async def task(pool, task_id: str):
    return await pool.fetchrow("SELECT * FROM tasks WHERE id = $1", task_id)


async def test_a_report_becomes_the_task_state_with_its_light_and_snapshot(tracker, pool):
    result = await tracker.send(progress("T07", "market-regulation", "2021-08-20 10:00", "in_progress", 60))
    assert result.applied == 1
    row = await task(pool, "T07")
    # As of 2021-09-01, T07-M1 (due 2021-06-30) is past due: red, until the unit catches up.
    assert (row["status"], row["percent"], row["light"], row["light_reason"]) == ("in_progress", 60, "red", "past_due")
    assert row["last_reporter"] == "/departments/market-regulation"
    changes = await tracker.outbox()
    assert [c["type"] for c in changes] == [MILESTONE_CHANGED, MILESTONE_CHANGED, LIGHT_CHANGED, TASK_UPDATED]
    assert changes[0]["data"] | {"as_of": None} == {"milestone_id": "T07-M1", "from": None, "to": "overdue", "as_of": None}
    assert changes[2]["data"]["from"] is None and changes[3]["data"]["light"] == "red"

    done = department_event("duban.task.milestone-completed.v1", "market-regulation", "T07", "2021-08-25 10:00",
                            {"milestone_id": "T07-M1"})
    await tracker.send(done)
    row = await task(pool, "T07")
    # Stepped back down while the completion awaits verification (within its grace).
    assert (row["light"], row["next_due"].isoformat()) == ("green", "2021-12-31")
    newest = await tracker.outbox()
    assert [c["type"] for c in newest[4:]] == [AWAITING_VERIFICATION, MILESTONE_CHANGED, LIGHT_CHANGED, TASK_UPDATED]
    assert newest[5]["data"] | {"as_of": None} == {"milestone_id": "T07-M1", "from": "overdue", "to": "open",
                                                   "as_of": None}
    assert newest[6]["data"] | {"as_of": None} == {"from": "red", "to": "green", "reason": "on_track", "as_of": None}


async def test_a_late_older_report_joins_the_history_without_replacing_the_newer(tracker, pool):
    newer = progress("T01", "admin-service-center", "2021-08-20 10:00", "in_progress", 70)
    older = progress("T01", "admin-service-center", "2021-08-10 10:00", "in_progress", 40)
    await tracker.send(newer)
    await tracker.send(older, newer)  # a redelivery too
    row = await task(pool, "T01")
    assert (row["percent"], row["last_event_id"]) == (70, newer["id"])
    assert await pool.fetchval("SELECT count(*) FROM task_reports WHERE task_id = 'T01'") == 2
    assert len(await tracker.outbox(TASK_UPDATED)) == 1  # the older report changed nothing to announce


async def test_refused_events_are_dead_lettered_and_counted(tracker, pool):
    def dead(reason: str) -> float:
        return REGISTRY.get_sample_value("duban_dead_letters_total",
                                         {"consumer": "tracker", "topic": "duban.dept-events", "reason": reason}) or 0

    before = {r: dead(r) for r in ("not_responsible", "unknown_milestone", "not_the_reporter")}
    good = progress("T09", "tax-bureau", "2021-08-20 10:00", "in_progress", 10)
    result = await tracker.send(
        progress("T09", "district-court", "2021-08-20 10:00", "in_progress", 10),
        department_event("duban.task.milestone-completed.v1", "tax-bureau", "T09", "2021-08-20 10:00",
                         {"milestone_id": "T09-M7"}),
        case_event("opened", "X1", "2021-08-20 10:00", {}, department="district-court"),
        good)
    assert (result.applied, [e.reason for _, e in result.dead]) == (
        1, ["not_responsible", "unknown_milestone", "not_the_reporter"])
    assert {r: dead(r) - before[r] for r in before} == {r: 1 for r in before}
    assert await pool.fetchval("SELECT count(*) FROM processed_events") == 1


async def test_a_case_closed_before_it_opened_is_announced_once_both_are_known(tracker, pool):
    close = case_event("closed", "R1", "2021-09-24 15:45", closed_data())
    await tracker.send(close)
    case = await pool.fetchrow("SELECT status, state FROM cases WHERE case_id = 'R1'")
    assert case["status"] == "closed" and json.loads(case["state"])["problem"] == "no opening event yet"
    assert await tracker.outbox() == []
    await tracker.send(case_event("step-completed", "R1", "2021-09-16 10:00", {"step": "review"}),
                       case_event("opened", "R1", "2021-09-15 10:12", {"reference": "（2021）税退0031"}))
    changes = await tracker.outbox()
    assert [c["type"] for c in changes] == ["duban.tracker.case.opened.v1", "duban.tracker.case.closed.v1"]
    assert changes[1]["data"] == {
        "department": "tax-bureau", "case_type": "export_tax_refund", "opened_at": "2021-09-15T02:12:00Z",
        "outcome": "completed", "closed_at": "2021-09-24T07:45:00Z", "handled_instantly": False, "trips": 0,
        "steps": 1, "paused_intervals": []}

    # A late pause changes the closed case's clock: one corrected announcement, then nothing more.
    pause, resume = (case_event("paused", "R1", "2021-09-16 10:30", {"reason": "supplement"}),
                     case_event("resumed", "R1", "2021-09-18 09:10", {"reason": "supplement"}))
    await tracker.send(resume)
    await tracker.send(pause, resume)
    closes = await tracker.outbox("duban.tracker.case.closed.v1")
    assert len(closes) == 2
    assert closes[1]["data"]["paused_intervals"] == [
        {"from": "2021-09-16T02:30:00Z", "to": "2021-09-18T01:10:00Z", "reason": "supplement"}]


async def test_case_ids_are_unique_per_department_only(tracker, pool):
    await tracker.send(case_event("opened", "S-1", "2021-09-01 09:00", {}, department="market-regulation",
                                  case_type="company_startup"),
                       case_event("opened", "S-1", "2021-09-02 09:00", {}, department="admin-service-center",
                                  case_type="company_startup"))
    rows = await pool.fetch("SELECT department, opened_at FROM cases WHERE case_id = 'S-1' ORDER BY department")
    assert [r["department"] for r in rows] == ["admin-service-center", "market-regulation"]


@pytest.mark.parametrize("split", [1, 3])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), history=case_histories())
async def test_any_arrival_order_gives_the_in_order_state_in_postgresql(tracker, pool, split, data, history):
    """The fold's property through the real consumer path: shuffled, duplicated events in batches
    leave the same case row and the same final announcement as in-order delivery."""
    def as_events(case_id: str) -> list[dict]:
        return [case_event(e.kind.replace("_", "-"), case_id, e.time, {
            k: v for k, v in e.data.items() if k != "case_type"}, event_id=f"{case_id}-{e.event_id}")
            for e in history]

    async def final(case_id: str) -> tuple[dict, dict]:
        row = await pool.fetchrow("SELECT state, announced FROM cases WHERE case_id = $1", case_id)
        state = json.loads(row["state"])
        return {**state, "case_id": None, "ignored": sorted(i["why"] for i in state["ignored"])}, \
            json.loads(row["announced"])

    in_order, shuffled = f"A{uuid.uuid4().hex[:8]}", f"B{uuid.uuid4().hex[:8]}"
    for event in as_events(in_order):
        await tracker.send(event)
    events = as_events(shuffled)
    arrived = data.draw(st.permutations(events + data.draw(st.lists(st.sampled_from(events), max_size=4))))
    for i in range(0, len(arrived), split):
        await tracker.send(*arrived[i:i + split])
    (state_a, announced_a), (state_b, announced_b) = await final(in_order), await final(shuffled)
    assert state_b == state_a
    assert announced_b == announced_a
    assert await pool.fetchval("SELECT count(*) FROM case_events WHERE case_id = $1", shuffled) == len(events)


async def test_the_scheduled_evaluation_announces_only_changes(tracker, pool):
    from services.tracker.scheduled import reevaluate_all

    first = await reevaluate_all(pool, tracker.evaluator, tracker.now)
    assert first == len(CATALOG.tasks) + sum(len(t.milestones) for t in CATALOG.tasks)  # every light and milestone
    assert await reevaluate_all(pool, tracker.evaluator, tracker.now) == 0
    # Days pass: T19 (due 2021-12-31) turns yellow in late October, red in January.
    assert (await reevaluate_all(pool, tracker.evaluator, tracker.now + timedelta(days=55))) > 0
    assert (await task(pool, "T19"))["light"] == "yellow"
    await reevaluate_all(pool, tracker.evaluator, tracker.now + timedelta(days=130))
    assert (await task(pool, "T19"))["light"] == "red"
    changes = [c["data"] for c in await tracker.outbox(LIGHT_CHANGED) if c["subject"] == "T19"]
    assert [(c["from"], c["to"]) for c in changes] == [(None, "green"), ("green", "yellow"), ("yellow", "red")]
