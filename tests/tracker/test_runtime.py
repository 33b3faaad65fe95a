"""Real tracker processes against the real broker and PostgreSQL: every event takes effect exactly
once through dropped database connections, a database outage longer than the retry budget, a
SIGKILLed replica, and a rebuild from the topic."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import httpx
import pytest

from duban.pg import create_pool
from services.tracker.replay import TrackerRunning, replay
from services.tracker.settings import TrackerSettings
from tests.tracker.runtime import (
    PgProxy,
    TrackerProcess,
    create_topics,
    exactly_once,
    produce,
    tracker_env,
    wait_for,
    workload,
)

pytestmark = [pytest.mark.database, pytest.mark.timeout(240)]


@pytest.fixture
def settings(unique_topics, kafka_bootstrap):
    return unique_topics.model_copy(update={"kafka_bootstrap": kafka_bootstrap})


@pytest.fixture
def env(settings, database_url, schema, tmp_path):
    """Makes tracker processes for the test; whatever still runs at the end is killed."""
    made: list[TrackerProcess] = []

    def make(name: str, url: str = database_url, **extra: str) -> TrackerProcess:
        data_dir = tmp_path / name
        data_dir.mkdir()
        env = tracker_env(settings, database_url=url, schema=schema, group=f"tracker-{schema}", data_dir=data_dir)
        made.append(TrackerProcess(env | extra, tmp_path / f"{name}.log"))
        return made[-1]

    yield make
    for process in made:
        if process.process and process.process.poll() is None:
            process.kill()


async def ready(*processes: TrackerProcess) -> bool:
    """Ready means the process's consumer owns partitions (see duban.streamservice)."""
    async with httpx.AsyncClient(timeout=2) as client:
        try:
            return all([(await client.get(p.url + "/readyz")).status_code == 200 for p in processes])
        except httpx.HTTPError:
            return False


async def applied(pool, n: int):
    return await pool.fetchval("SELECT count(*) FROM processed_events") >= n


async def test_connections_killed_mid_batch_are_retried_and_nothing_is_lost_or_doubled(settings, env, pool, schema,
                                                                                       database_url):
    await create_topics(settings)
    tracker = env("killed").start()
    events = workload(cases=500, reports=1500)
    stop = asyncio.Event()

    async def kill_backends() -> int:
        """Terminate the tracker's backends that are inside a transaction, i.e. mid-batch."""
        killed = 0
        admin = await asyncpg.connect(database_url)
        try:
            while not stop.is_set():
                now_killed = await admin.fetchval(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = $1 AND xact_start IS NOT NULL AND query NOT LIKE '%LISTEN%'"
                    " AND query NOT LIKE '%advisory%') AS t", f"duban-{schema}")
                killed += now_killed
                # A batch caught in its transaction dies; its retry gets a quiet moment to go through.
                await asyncio.sleep(1.5 if now_killed else 0.005)
        finally:
            await admin.close()
        return killed

    await wait_for(lambda: ready(tracker), 60, "the tracker to own its partitions", tracker)
    killer = asyncio.create_task(kill_backends())
    try:
        await produce(settings, events, per_second=1000)
        await wait_for(lambda: applied(pool, len(events)), 90, "every event applied", tracker)
    finally:
        stop.set()
    assert await killer >= 2
    assert tracker.process.poll() is None, tracker.log()[-4000:]  # retried in place, no restart needed
    assert "batch failed transiently; retrying" in tracker.log()
    await exactly_once(pool, events)
    assert tracker.stop(), tracker.log()[-4000:]


async def test_an_outage_beyond_the_retry_budget_exits_unacknowledged_and_redelivery_applies_all(
        settings, env, pool, database_url):
    await create_topics(settings)
    proxy = await PgProxy(database_url).start()
    via_proxy = proxy.url
    events = workload(cases=100, reports=200, seed=11)
    half = len(events) // 2
    try:
        tracker = env("outage", via_proxy, DUBAN_RETRY_BUDGET_S="3").start()
        await produce(settings, events[:half])
        await wait_for(lambda: applied(pool, half), 60, "the first half applied", tracker)
        proxy.cut()
        await produce(settings, events[half:])
        code = await wait_for(lambda: asyncio.sleep(0, tracker.process.poll()), 60, "the tracker to give up", tracker)
        assert code == 75, tracker.log()[-4000:]
        assert "exiting without acknowledging" in tracker.log()
        proxy.restore()
        tracker = env("outage-restarted", via_proxy).start()
        await wait_for(lambda: applied(pool, len(events)), 90, "every event applied after the restart", tracker)
        await exactly_once(pool, events)
        # In a thread: the proxy runs on this event loop and must keep forwarding while the tracker stops.
        assert await asyncio.to_thread(tracker.stop), tracker.log()[-4000:]
    finally:
        await proxy.close()


async def test_two_replicas_share_the_partitions_and_a_sigkill_loses_nothing(settings, env, pool):
    await create_topics(settings)
    a, b = env("replica-a").start(), env("replica-b").start()

    await wait_for(lambda: ready(a, b), 60, "both replicas to own partitions", a, b)
    events = workload(cases=400, reports=1000, seed=5)
    feed = asyncio.create_task(produce(settings, events, per_second=800))
    await wait_for(lambda: applied(pool, len(events) // 4), 60, "a quarter applied", a, b)
    a.kill()
    await feed
    await wait_for(lambda: applied(pool, len(events)), 120, "every event applied by the survivor", b)
    await exactly_once(pool, events)
    assert b.stop(), b.log()[-4000:]


async def snapshot(database_url: str, schema: str) -> dict:
    """The state a rebuild must reproduce; arrival instants (received/processed/updated) excluded."""
    pool = await create_pool(database_url, schema, max_size=1)
    try:
        tables = {
            "tasks": "SELECT id, status, percent, light, light_reason, light_as_of, light_basis, next_due,"
                     " last_report_at, last_reporter, last_event_id FROM tasks ORDER BY id",
            "milestones": "SELECT milestone_id, due, status, done_event_id, status_as_of FROM milestones"
                          " ORDER BY milestone_id, due",
            "reports": "SELECT source, event_id, task_id, event_time, percent FROM task_reports ORDER BY 1, 2",
            "case_events": "SELECT source, event_id, department, case_id, type, event_time, data FROM case_events"
                           " ORDER BY 1, 2",
            "cases": "SELECT department, case_id, status, opened_at, ended_at, state, announced FROM cases ORDER BY 1, 2",
            "ledger": "SELECT source, id, type FROM processed_events ORDER BY 1, 2",
        }
        return {name: [dict(r) for r in await pool.fetch(sql)] for name, sql in tables.items()}
    finally:
        await pool.close()


async def test_replay_rebuilds_the_live_state(settings, env, pool, database_url, schema):
    await create_topics(settings)
    tracker = env("live").start()
    events = workload(cases=150, reports=300, seed=3)
    await produce(settings, events)
    await wait_for(lambda: applied(pool, len(events)), 60, "the live tracker to apply everything", tracker)
    replay_settings = TrackerSettings(**json.loads(settings.model_dump_json()) | {
        "database_url": database_url, "schema_name": schema, "clock_start": tracker.env["DUBAN_CLOCK_START"], "clock_speed": 0})
    with pytest.raises(TrackerRunning):
        await replay(replay_settings)
    assert tracker.stop(), tracker.log()[-4000:]
    live = await snapshot(database_url, schema)

    report = await replay(replay_settings)
    assert (report.events, report.applied, report.dead) == (len(events), len(events), 0)
    rebuilt = await snapshot(database_url, schema)
    assert rebuilt == live
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0


async def test_sigterm_mid_batch_finishes_the_batch_before_stopping(settings, env, pool, database_url):
    await create_topics(settings)
    proxy = await PgProxy(database_url).start()
    events = workload(cases=40, reports=100, seed=13)
    try:
        tracker = env("sigterm", proxy.url, DUBAN_RETRY_BUDGET_S="60").start()
        await wait_for(lambda: ready(tracker), 60, "the tracker to own its partitions", tracker)
        proxy.cut()
        await produce(settings, events)
        await wait_for(lambda: asyncio.sleep(0, "batch failed transiently" in tracker.log()), 30,
                       "a batch to be in flight, retrying", tracker)
        stopping = asyncio.create_task(asyncio.to_thread(tracker.stop))
        await asyncio.sleep(1.5)
        proxy.restore()
        assert await stopping, tracker.log()[-4000:]  # stopped cleanly, not exit 75
        assert "exiting without acknowledging" not in tracker.log()
        assert await pool.fetchval("SELECT count(*) FROM processed_events") > 0
        # Whatever the stopped process acknowledged took effect; a successor applies the rest once.
        tracker = env("sigterm-successor", proxy.url).start()
        await wait_for(lambda: applied(pool, len(events)), 90, "every event applied", tracker)
        await exactly_once(pool, events)
        assert await asyncio.to_thread(tracker.stop), tracker.log()[-4000:]
    finally:
        await proxy.close()
