"""The outbox relay: in commit order per aggregate, and a crash between publish and mark that
republishes does not double any effect downstream; a change that breaks its contract fails the
transaction that writes it; a row that can never be published is parked while the rows after it go
out, and a lost database is retried."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timezone

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from duban import outbox
from duban.broker import make_producer
from duban.consumer import Delivery, LedgerConsumer
from duban.events.models import TaskUpdated, TrackedCaseClosed
from duban.events.registry import InvalidEvent, validate_or_raise
from duban.outbox import PARKED, Change, OutboxRelay
from duban.pg import create_pool
from tests.tracker.runtime import PgProxy, create_topics

pytestmark = pytest.mark.database



class Rollback(Exception):
    pass


async def read_topic(settings, n: int) -> list:
    reader = AIOKafkaConsumer(settings.topic_tracker_changes, bootstrap_servers=settings.kafka_bootstrap,
                              auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    await reader.start()
    records = []
    try:
        while len(records) < n:
            batch = await reader.getmany(timeout_ms=1000)
            assert batch, f"only {len(records)} of {n} records arrived"
            records += [r for rs in batch.values() for r in rs]
    finally:
        await reader.stop()
    return records


async def test_relay_publishes_in_order_per_aggregate_and_a_replay_of_it_changes_nothing(
        pool, producer, unique_topics, kafka_bootstrap):
    settings = unique_topics.model_copy(update={"kafka_bootstrap": kafka_bootstrap})
    await create_topics(settings)
    at = datetime(2021, 9, 1, tzinfo=timezone.utc)
    changes = [Change(TaskUpdated, f"T{1 + i % 5:02d}", {"status": "in_progress", "percent": i, "light": "green",
                                                  "reported_at": at.isoformat().replace("+00:00", "Z")}, at)
               for i in range(100)]
    async with pool.acquire() as conn:
        await outbox.add_many(conn, changes)
    relay = OutboxRelay(pool, producer, schema=await pool.fetchval("SELECT current_schema()"),
                        topic=settings.topic_tracker_changes, source="/services/tracker")

    # The relay publishes, then "crashes" before its mark commits: every row goes out again.
    async with pool.acquire() as conn:
        with pytest.raises(Rollback):
            async with conn.transaction():
                assert await relay.publish_pending(conn) == 100
                raise Rollback
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 100
        assert await relay.publish_pending(conn) == 100
        assert await relay.publish_pending(conn) == 0

    records = await read_topic(settings, 200)
    per_key: dict[bytes, list[int]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        per_key.setdefault(record.key, []).append(json.loads(record.value)["percent"])
    for key, percents in per_key.items():
        first, second = percents[:20], percents[20:]
        assert first == sorted(first) and second == first, key  # in order, twice over

    # Downstream, a ledger consumer applies each change once although it arrived twice.
    applied: list[str] = []

    async def handler(conn, event) -> None:
        applied.append(event.ce["id"])

    downstream = LedgerConsumer(name=f"downstream-{uuid.uuid4().hex[:6]}", pool=pool, producer=producer,
                                handler=handler, validate=validate_or_raise)
    result = await downstream.apply([Delivery(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers))
                                     for r in records])
    assert (result.applied, result.duplicates, len(set(applied))) == (100, 100, 100)


# --- a row's fault is parked, the infrastructure's is retried -----------------------------------

def _updated(percent: int) -> Change:
    at = datetime(2021, 9, 1, tzinfo=timezone.utc)
    return Change(TaskUpdated, "T07", {"status": "in_progress", "percent": percent, "light": "green",
                                "reported_at": "2021-09-01T00:00:00Z"}, at)


def _closed_case(intervals: int) -> Change:
    at = "2021-09-01T00:00:00Z"
    return Change(TrackedCaseClosed, "C-1", {
        "department": "tax-bureau", "case_type": "export_tax_refund", "outcome": "completed", "opened_at": at,
        "closed_at": at, "handled_instantly": False, "trips": 0, "steps": 0,
        "paused_intervals": [{"from": at, "to": at, "reason": "supplement"}] * intervals},
        datetime(2021, 9, 1, tzinfo=timezone.utc))


async def _relay_until_published(relay: OutboxRelay, pool, n: int) -> None:
    """Run the relay as the service does until `n` rows are published; it must still be running then."""
    task = asyncio.create_task(relay.run(retry_after_s=0.2))
    try:
        for _ in range(150):
            if await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL") >= n:
                break
            assert not task.done(), task.exception()
            await asyncio.sleep(0.1)
        assert not task.done(), "the relay stopped"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_change_that_breaks_its_contract_fails_the_transaction_that_writes_it(pool):
    async with pool.acquire() as conn:
        with pytest.raises(InvalidEvent) as refused:
            async with conn.transaction():
                await outbox.add_many(conn, [_updated(10), _updated(500), _updated(30)])  # 500 percent breaks it
        assert "/data/percent" in str(refused.value)
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0


async def test_a_row_the_producer_refuses_for_its_size_is_parked(pool, unique_topics, kafka_bootstrap):
    settings = unique_topics.model_copy(update={"kafka_bootstrap": kafka_bootstrap})
    await create_topics(settings)
    small = make_producer(settings, max_request_size=2048)
    await small.start()
    try:
        schema = await pool.fetchval("SELECT current_schema()")
        async with pool.acquire() as conn:
            await outbox.add_many(conn, [_closed_case(200), _updated(40)])
        parked_before = PARKED.labels(schema)._value.get()
        relay = OutboxRelay(pool, small, schema=schema, topic=settings.topic_tracker_changes, source="/services/tracker")
        await _relay_until_published(relay, pool, 1)
        assert [json.loads(r.value)["percent"] for r in await read_topic(settings, 1)] == [40]
        async with pool.acquire() as conn:
            (row,) = await outbox.parked_rows(conn)
            assert row["type"] == TrackedCaseClosed.TYPE and "MessageSizeTooLargeError" in row["park_reason"]
            assert PARKED.labels(schema)._value.get() == parked_before + 1
            # Released while still too large, it is parked again and blocks nothing.
            assert await outbox.release(conn, row["seq"]) and not await outbox.parked_rows(conn)
            assert await relay.publish_pending(conn) == 1
            assert [r["seq"] for r in await outbox.parked_rows(conn)] == [row["seq"]]
            assert not await outbox.release(conn, row["seq"] + 1000)
    finally:
        await small.stop()


async def test_a_lost_database_is_retried_and_parks_nothing(database_url, schema, producer, unique_topics,
                                                            kafka_bootstrap):
    settings = unique_topics.model_copy(update={"kafka_bootstrap": kafka_bootstrap})
    await create_topics(settings)
    proxy = await PgProxy(database_url).start()
    pool = await create_pool(proxy.url, schema)
    try:
        relay = OutboxRelay(pool, producer, schema=schema, topic=settings.topic_tracker_changes,
                            source="/services/tracker", idle_poll_s=0.1)
        task = asyncio.create_task(relay.run(retry_after_s=0.2))
        await asyncio.sleep(0.5)
        proxy.cut()
        direct = await asyncpg.connect(database_url, server_settings={"search_path": schema})
        try:
            await outbox.add_many(direct, [_updated(50), _updated(60)])
            await asyncio.sleep(1.0)
            assert not task.done(), "the relay gave up while the database was away"
            proxy.restore()
            for _ in range(100):
                if await direct.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL") == 2:
                    break
                await asyncio.sleep(0.1)
            assert await direct.fetchval("SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL") == 0
        finally:
            await direct.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await pool.close()
        await proxy.close()
    assert [json.loads(r.value)["percent"] for r in await read_topic(settings, 2)] == [50, 60]
