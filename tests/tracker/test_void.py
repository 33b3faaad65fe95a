"""Voiding an applied event: recorded with who and why, append-only, and the task or case re-derived
without it, its change events in the outbox."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import date

import asyncpg
import pytest

from duban.events.models import TaskUpdated
from services.tracker.extensions import decide_extension, request_extension
from services.tracker.replay import replay
from services.tracker.settings import TrackerSettings
from services.tracker.void import VoidRefused, void_event
from tests.conftest import ROOT
from tests.tracker.conftest import NOW, case_event, progress
from tests.tracker.runtime import create_topics, produce

pytestmark = pytest.mark.database


async def percent(pool) -> int:
    return await pool.fetchval("SELECT percent FROM tasks WHERE id = 'T20'")


async def test_a_report_dated_9999_freezes_the_task_until_it_is_voided(tracker, pool):
    # Accepted before the time window existed: from then on it is always the latest report.
    real = progress("T20", "district-court", "2021-08-20 10:00", "in_progress", 60)
    doomsday = progress("T20", "district-court", "2021-08-21 10:00", "in_progress", 5)
    doomsday["time"] = "9999-12-31T00:00:00+08:00"
    await tracker.send(real, doomsday)
    later = progress("T20", "district-court", "2021-08-25 10:00", "in_progress", 70)
    await tracker.send(later)
    assert await percent(pool) == 5, "the far-future report hides every real one"

    async with pool.acquire() as conn:
        voided = await void_event(conn, doomsday["source"], doomsday["id"], "time typed as 9999-12-31",
                                  "district-office:wang", now=NOW)
    assert (voided.type, voided.subject, voided.changes >= 1) == ("duban.task.progress-reported.v1", "T20", True)
    assert await percent(pool) == 70
    assert (await tracker.outbox(TaskUpdated.TYPE))[-1]["data"]["percent"] == 70

    newest = progress("T20", "district-court", "2021-08-30 10:00", "in_progress", 80)
    await tracker.send(newest)
    assert await percent(pool) == 80, "later real reports are applied again"
    await tracker.send(doomsday)  # a redelivery stays skipped by the ledger
    assert await percent(pool) == 80

    row = await pool.fetchrow("SELECT * FROM voided_events")
    assert (row["reason"], row["principal"]) == ("time typed as 9999-12-31", "district-office:wang")
    assert await pool.fetchval("SELECT count(*) FROM task_reports WHERE event_id = $1", doomsday["id"]) == 1, "kept"
    for statement in ("UPDATE voided_events SET reason = 'x'", "DELETE FROM voided_events"):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await pool.execute(statement)


async def test_voiding_twice_an_unknown_event_or_without_a_reason_is_refused(tracker, pool):
    report = progress("T20", "district-court", "2021-08-20 10:00", "in_progress", 60)
    await tracker.send(report)
    async with pool.acquire() as conn:
        await void_event(conn, report["source"], report["id"], "wrong task", "district-office:li", now=NOW)
        for args, status in [((report["source"], report["id"], "again", "district-office:li"), 409),
                             ((report["source"], "no-such-event", "x", "district-office:li"), 404),
                             ((report["source"], report["id"], "  ", "district-office:li"), 400)]:
            with pytest.raises(VoidRefused) as refused:
                await void_event(conn, *args, now=NOW)
            assert refused.value.status == status
    # Its only report voided, the task is as the plan left it.
    assert (await pool.fetchrow("SELECT status, percent FROM tasks WHERE id = 'T20'"))[:] == ("not_started", 0)


async def test_a_voided_step_is_refolded_out_of_its_case_and_the_close_announced_again(tracker, pool):
    case = "V-1"
    step = case_event("step-completed", case, "2021-08-02 11:00", {"step": "review"})
    await tracker.send(case_event("opened", case, "2021-08-02 09:00", {}), step,
                       case_event("closed", case, "2021-08-03 09:00",
                                  {"outcome": "completed", "handled_instantly": False, "trips": 1}))
    assert (await tracker.outbox("duban.tracker.case.closed.v1"))[-1]["data"]["steps"] == 1
    async with pool.acquire() as conn:
        voided = await void_event(conn, step["source"], step["id"], "step reported for another case", "ops", now=NOW)
    assert voided.changes == 1
    closes = await tracker.outbox("duban.tracker.case.closed.v1")
    assert [c["data"]["steps"] for c in closes] == [1, 0]


async def test_duban_events_void_from_the_command_line(tracker, pool, database_url, schema):
    report = progress("T20", "district-court", "2021-08-20 10:00", "in_progress", 60)
    await tracker.send(report)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")} | {
        "DUBAN_DATABASE_URL": database_url, "DUBAN_SCHEMA_NAME": schema, "DUBAN_FIXED_NOW": NOW.isoformat()}
    command = [sys.executable, "-m", "duban.cli", "events", "void", report["source"], report["id"],
               "--reason", "sent for the wrong task", "--principal", "district-office:zhao"]
    for expected_rc, expected_out in [(0, f"voided duban.task.progress-reported.v1 {report['id']} of T20"
                                          " (district-office:zhao"), (1, "voided before")]:
        done = await asyncio.to_thread(subprocess.run, command, cwd=ROOT, env=env, capture_output=True, text=True,
                                       timeout=60)
        assert (done.returncode, expected_out in done.stdout) == (expected_rc, True), done.stdout + done.stderr
    assert await pool.fetchval("SELECT principal FROM voided_events") == "district-office:zhao"
    assert await percent(pool) == 0


async def test_a_replay_keeps_the_voids(tracker, pool, database_url, schema, unique_topics, kafka_bootstrap):
    topics = unique_topics.model_copy(update={"kafka_bootstrap": kafka_bootstrap})
    await create_topics(topics)
    real = progress("T20", "district-court", "2021-08-20 10:00", "in_progress", 60)
    wrong = progress("T20", "district-court", "2021-08-25 10:00", "in_progress", 95)  # meant for another task
    await produce(topics, [real, wrong])
    await tracker.send(real, wrong)
    async with pool.acquire() as conn:
        await void_event(conn, wrong["source"], wrong["id"], "meant for T21", "district-office:wang", now=NOW)
    assert await percent(pool) == 60
    async with pool.acquire() as conn:
        asked = await request_extension(conn, "T20", "T20-M1", due=None, new_due=date(2022, 3, 31), reason="延后",
                                        evidence=[], principal="district-court", now=NOW)
        await decide_extension(conn, tracker.evaluator, asked["id"], approve=True, reason="同意",
                               principal="district-office:wang", now=NOW)

    report = await replay(TrackerSettings(**json.loads(topics.model_dump_json()) | {
        "database_url": database_url, "schema_name": schema, "fixed_now": NOW.isoformat()}))
    assert (report.events, report.applied) == (2, 2)
    assert await percent(pool) == 60, "the rebuilt task leaves the voided report out"
    assert await pool.fetchval("SELECT reason FROM voided_events WHERE event_id = $1", wrong["id"]) == "meant for T21"
    assert await pool.fetchval("SELECT due FROM milestones WHERE milestone_id = 'T20-M1'") == date(2021, 12, 31)
    assert await pool.fetchval("SELECT next_due FROM tasks WHERE id = 'T20'") == date(2022, 3, 31), \
        "the rebuilt task keeps the approved extension"
    again = await pool.fetchval("INSERT INTO milestone_extensions (task_id, milestone_id, original_due, requested_due,"
                                " reason, requested_by, requested_at) VALUES ('T20', 'T20-M1', '2021-12-31',"
                                " '2022-06-30', 'x', 'district-court', now()) RETURNING id")
    assert again == asked["id"] + 1
