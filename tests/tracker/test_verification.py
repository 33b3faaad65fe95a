"""办结销号 with 复核 over HTTP: a department's "done" awaits the district office, which verifies or returns it."""

from __future__ import annotations

import json

import httpx
import pytest
from prometheus_client import REGISTRY

from duban.events import validate_event
from duban.events.models import (
    CompletionAwaitingVerification,
    CompletionReturned,
    CompletionVerified,
    MilestoneStatusChanged,
    TaskLightChanged,
)
from services.tracker.api import install, router
from services.tracker.replay import replay
from services.tracker.scheduled import reevaluate_all
from services.tracker.settings import TrackerSettings
from tests.conftest import read_api, serving
from tests.tracker.conftest import CATALOG, NOW, at, department_event, progress
from tests.tracker.runtime import create_topics, produce

pytestmark = pytest.mark.database

AWAITING_VERIFICATION, COMPLETION_VERIFIED, COMPLETION_RETURNED = (
    CompletionAwaitingVerification.TYPE, CompletionVerified.TYPE, CompletionReturned.TYPE)
LIGHT_CHANGED, MILESTONE_CHANGED = TaskLightChanged.TYPE, MilestoneStatusChanged.TYPE

OWNER, OTHER = "market-regulation", "commerce"  # T07 is the market regulator's
# T07-M1 was due 2021-06-30; the tests stand on 2021-09-01 (a Wednesday). A "done" of Wednesday
# 2021-08-25 keeps its item from red through 5 working days later: 2021-09-01.
DONE_AT = "2021-08-25 10:00"


def completed(milestone_id: str, time: str = DONE_AT) -> dict:
    return department_event("duban.task.milestone-completed.v1", OWNER, milestone_id.split("-")[0], time,
                            {"milestone_id": milestone_id})


@pytest.fixture
async def office(tracker, pool, tokens):
    await tracker.send(progress("T07", OWNER, "2021-08-20 10:00", "in_progress", 60))
    app = install(read_api(router, pool, tokens), CATALOG, tracker.evaluator, lambda: tracker.now)
    async with serving(app) as url, \
            httpx.AsyncClient(base_url=url, headers=tokens.headers(subject="督查室 李四")) as client:
        yield client


async def milestone(office: httpx.AsyncClient, milestone_id: str = "T07-M1", due: str = "2021-06-30") -> dict:
    task = (await office.get("/v1/tasks/T07")).json()
    return next(m for m in task["milestones"] if (m["milestone_id"], m["original_due"]) == (milestone_id, due))


async def light(pool) -> str:
    return await pool.fetchval("SELECT light FROM tasks WHERE id = 'T07'")


async def test_a_completed_milestone_awaits_verification_and_is_red_again_after_the_grace(tracker, office, pool):
    assert await light(pool) == "red"
    done = completed("T07-M1")
    await tracker.send(done)
    occurrence = await milestone(office)
    assert occurrence["status"] == "awaiting_verification"
    assert occurrence["verification"] | {"requested_at": None} == {
        "task_id": "T07", "milestone_id": "T07-M1", "due": "2021-06-30", "source": done["source"],
        "event_id": done["id"], "requested_at": None, "grace_until": "2021-09-01", "status": "awaiting",
        "outcome": None, "reason": None, "decided_by": None, "decided_at": None}
    assert await light(pool) == "green", "within the grace the completion keeps the milestone from red"
    [awaiting] = await tracker.outbox(AWAITING_VERIFICATION)
    assert (awaiting["data"]["request_id"], awaiting["data"]["grace_until"]) == (done["id"], "2021-09-01")
    listed = (await office.get("/v1/verifications", params={"status": "awaiting"})).json()
    assert [(v["milestone_id"], v["event_id"]) for v in listed["items"]] == [("T07-M1", done["id"])]
    assert REGISTRY.get_sample_value("duban_tracker_awaiting_verification", {"kind": "milestone"}) == 1

    # The grace over and nothing verified: red again, still awaiting, announced as overdue.
    await reevaluate_all(pool, tracker.evaluator, at("2021-09-02 09:00"))
    assert await light(pool) == "red"
    assert (await milestone(office))["status"] == "awaiting_verification"
    assert [c["data"]["to"] for c in await tracker.outbox(MILESTONE_CHANGED)
            if c["data"]["milestone_id"] == "T07-M1"][-1] == "overdue"

    tracker.now = at("2021-09-02 10:00")
    verified = await office.post("/v1/tasks/T07/milestones/T07-M1/verification", json={"outcome": "verified"})
    assert verified.status_code == 200, verified.text
    assert (verified.json()["status"], verified.json()["decided_by"]) == ("verified", "督查室 李四")
    occurrence = await milestone(office)
    assert (occurrence["status"], occurrence["verification"]["outcome"]) == ("done", "verified")
    assert await light(pool) == "green"
    [event] = await tracker.outbox(COMPLETION_VERIFIED)
    assert (event["data"]["milestone_id"], event["data"]["decided_by"]) == ("T07-M1", "督查室 李四")
    # The decision is announced ahead of the light it changes.
    types = [c["type"] for c in await tracker.outbox()]
    assert types.index(COMPLETION_VERIFIED) < len(types) - 1 - types[::-1].index(LIGHT_CHANGED)
    again = await office.post("/v1/tasks/T07/milestones/T07-M1/verification", json={"outcome": "verified"})
    assert (again.status_code, again.json()["type"].split("/")[-1]) == (409, "nothing-awaits-verification")


async def test_a_returned_completion_counts_as_never_having_happened(tracker, office, pool):
    done = completed("T07-M1")
    await tracker.send(done)
    blank = await office.post("/v1/tasks/T07/milestones/T07-M1/verification", json={"outcome": "returned"})
    assert (blank.status_code, blank.json()["type"].split("/")[-1]) == (422, "reason-required")
    returned = await office.post("/v1/tasks/T07/milestones/T07-M1/verification",
                                 json={"outcome": "returned", "reason": "佐证材料不全"})
    assert returned.status_code == 200, returned.text
    occurrence = await milestone(office)
    assert (occurrence["status"], occurrence["done_event_id"]) == ("overdue", None)
    assert (occurrence["verification"]["outcome"], occurrence["verification"]["reason"]) == ("returned", "佐证材料不全")
    assert await light(pool) == "red", "the light resumes as if the completion had not happened"
    [event] = await tracker.outbox(COMPLETION_RETURNED)
    assert event["data"]["reason"] == "佐证材料不全"

    # A completion sent anew awaits verification afresh; the returned one stays on record.
    tracker.now = at("2021-09-01 11:00")
    anew = completed("T07-M1", "2021-09-01 10:30")
    await tracker.send(anew)
    occurrence = await milestone(office)
    assert (occurrence["status"], occurrence["done_event_id"]) == ("awaiting_verification", anew["id"])
    history = (await office.get("/v1/tasks/T07")).json()["verifications"]
    assert [(v["event_id"], v["status"]) for v in history] == [(done["id"], "returned"), (anew["id"], "awaiting")]
    # Decisions are never edited.
    with pytest.raises(Exception, match="append-only"):
        await pool.execute("UPDATE verification_decisions SET outcome = 'verified'")


async def test_a_done_report_awaits_verification_and_a_return_puts_the_task_back_in_progress(tracker, office, pool):
    first = progress("T07", OWNER, "2021-08-30 10:00", "done", 100)
    await tracker.send(first)
    task = (await office.get("/v1/tasks/T07")).json()
    assert (task["status"], task["light"], task["verification"]["grace_until"]) == (
        "awaiting_verification", "green", "2021-09-06")
    assert (await office.get("/v1/tasks", params={"status": "awaiting_verification"})).json()["total"] == 1

    returned = await office.post("/v1/tasks/T07/verification", json={"outcome": "returned", "reason": "未见上线证明"})
    assert returned.status_code == 200, returned.text
    task = (await office.get("/v1/tasks/T07")).json()
    assert (task["status"], task["light"], task["verification"]["reason"]) == ("in_progress", "red", "未见上线证明")

    second = progress("T07", OWNER, "2021-08-31 16:00", "done", 100)
    await tracker.send(second)
    assert (await office.get("/v1/tasks/T07")).json()["status"] == "awaiting_verification"
    verified = await office.post("/v1/tasks/T07/verification", json={"outcome": "verified", "reason": "同意销号"})
    assert verified.json()["outcome"] == "verified"
    task = (await office.get("/v1/tasks/T07")).json()
    assert (task["status"], task["light"], task["light_reason"]) == ("done", "green", "on_track")  # T07-M2 is to come

    # The request, the decision and its reason stay in the task's history.
    history = (await office.get("/v1/tasks/T07/history")).json()["items"]
    assert [(r["event_id"], (r["verification"] or {}).get("outcome")) for r in history] == [
        (second["id"], "verified"), (first["id"], "returned"), (history[-1]["event_id"], None)]
    decided = (await office.get("/v1/verifications", params={"status": "returned"})).json()
    assert [(v["event_id"], v["reason"], v["decided_by"]) for v in decided["items"]] == [
        (first["id"], "未见上线证明", "督查室 李四")]
    for outbox_event in await tracker.outbox():
        if outbox_event["type"].startswith("duban.tracker.completion."):
            envelope = {"specversion": "1.0", "id": "x1", "source": "/services/tracker", "type": outbox_event["type"],
                        "subject": outbox_event["subject"], "time": "2021-09-01T02:00:00Z", "data": outbox_event["data"]}
            assert validate_event(envelope) == [], outbox_event


async def test_who_may_verify(tracker, office, tokens):
    await tracker.send(completed("T07-M1"))
    verdict = {"outcome": "verified"}
    async with httpx.AsyncClient(base_url=str(office.base_url)) as client:
        assert (await client.post("/v1/tasks/T07/verification", json=verdict)).status_code == 401
        for headers in (tokens.headers("viewer"), tokens.headers(department=OWNER), tokens.headers(department=OTHER)):
            refused = await client.post("/v1/tasks/T07/milestones/T07-M1/verification", json=verdict, headers=headers)
            assert (refused.status_code, refused.headers["content-type"]) == (403, "application/problem+json")
        assert (await client.get("/v1/verifications", headers=tokens.headers(department=OTHER))).json()["total"] == 0
        assert (await client.get("/v1/verifications", headers=tokens.headers(department=OWNER))).json()["total"] == 1
    assert (await office.post("/v1/tasks/T99/verification", json=verdict)).status_code == 404
    assert (await office.post("/v1/tasks/T07/milestones/T07-M9/verification", json=verdict)).status_code == 404
    nothing = await office.post("/v1/tasks/T07/verification", json=verdict)
    assert (nothing.status_code, nothing.headers["content-type"]) == (409, "application/problem+json")


async def test_a_replay_reproduces_the_verified_and_returned_state(tracker, office, pool, database_url, schema,
                                                                   unique_topics, kafka_bootstrap):
    topics = unique_topics.model_copy(update={"kafka_bootstrap": kafka_bootstrap})
    await create_topics(topics)
    report = progress("T07", OWNER, "2021-08-20 10:00", "in_progress", 60)  # the fixture's, sent again to the topic
    events = [report, completed("T07-M1"), progress("T07", OWNER, "2021-08-30 10:00", "done", 100),
              completed("T07-M2", "2021-08-31 10:00")]
    await tracker.send(*events)
    await office.post("/v1/tasks/T07/milestones/T07-M1/verification", json={"outcome": "returned", "reason": "不全"})
    await office.post("/v1/tasks/T07/verification", json={"outcome": "verified"})

    async def state() -> tuple:
        task = await pool.fetchrow("SELECT status, percent, light, light_reason, next_due FROM tasks WHERE id = 'T07'")
        milestones = await pool.fetch("SELECT milestone_id, due, status, done_event_id, announced FROM milestones"
                                      " WHERE task_id = 'T07' ORDER BY milestone_id, due")
        return tuple(task), [tuple(m) for m in milestones]

    before = await state()
    assert before[0][:2] == ("done", 100) and ("T07-M1", "overdue") in [(m[0], m[2]) for m in before[1]]
    await produce(topics, events)
    rebuilt = await replay(TrackerSettings(**json.loads(topics.model_dump_json()) | {
        "database_url": database_url, "schema_name": schema, "clock_start": NOW.isoformat(), "clock_speed": 0}))
    assert rebuilt.applied == len(events)
    assert await state() == before
    assert await pool.fetchval("SELECT count(*) FROM verification_decisions") == 2
