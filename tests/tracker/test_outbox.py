"""The outbox relay: in commit order per aggregate, and a crash between publish and mark that
republishes does not double any effect downstream."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest
from aiokafka import AIOKafkaConsumer

from duban import outbox
from duban.consumer import Delivery, LedgerConsumer
from duban.events.registry import validate_or_raise
from duban.outbox import Change, OutboxRelay
from tests.tracker.runtime import create_topics

pytestmark = pytest.mark.database

TYPE = "duban.tracker.task.updated.v1"


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
    changes = [Change(TYPE, f"T{1 + i % 5:02d}", {"status": "in_progress", "percent": i, "light": "green",
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
