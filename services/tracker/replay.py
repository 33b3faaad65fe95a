"""`duban replay tracker`: rebuild the tracker's schema from the department topic.

Drops the schema, migrates it afresh, and applies the topic from its first offset through the
same ledger consumer and handlers as the live service, up to the high watermarks read at the
start; then evaluates every task as of now. It reads with aiokafka directly, assigned to every
partition with no consumer group, so the live group's committed offsets stay as they were: a
tracker started afterwards resumes there and the ledger skips what the replay already applied.

The district office's voids (services/tracker/void.py) are carried over: the rebuilt state leaves
out the same events; so are extension requests and their decisions (services/tracker/extensions.py) and
the verification decisions (services/tracker/verification.py), which the fold reads as the live one does. Stop every tracker first: the command refuses to run while one holds the schema's relay lock.
The rebuilt outbox repeats what was announced before, so its rows are marked published unless
`--announce` is given (then consumers apply what changed and skip nothing else: see docs/tracker.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from duban.broker import kafka_client_options, make_producer
from duban.catalog import load_catalog
from duban.consumer import Delivery, LedgerConsumer, validate_by_model
from duban.pg import create_pool, migrate
from duban.workcal import WorkingCalendar
from services.tracker import store
from services.tracker.evaluation import TaskEvaluator
from services.tracker.handlers import TrackerHandlers
from services.tracker.scheduled import reevaluate_all
from services.tracker.settings import TrackerSettings

MIGRATIONS = Path(__file__).parent / "migrations"


class TrackerRunning(RuntimeError):
    pass


@dataclass
class ReplayReport:
    events: int = 0
    applied: int = 0
    duplicates: int = 0
    dead: int = 0
    announced: bool = False


async def _read_to_watermarks(settings: TrackerSettings, consumer: LedgerConsumer, report: ReplayReport) -> None:
    reader = AIOKafkaConsumer(**kafka_client_options(settings), enable_auto_commit=False, group_id=None)
    await reader.start()
    try:
        await reader.topics()  # loads the metadata partitions_for_topic answers from
        partitions = [TopicPartition(settings.topic_dept_events, p)
                      for p in sorted(reader.partitions_for_topic(settings.topic_dept_events) or ())]
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        # The targets are the high watermarks of the first fetch response of each partition, not
        # ListOffsets: Tansu answers that with wrong offsets (docs/decisions/009-tracker-consumer-runtime.md).
        targets: dict[TopicPartition, int] = {}
        while len(targets) < len(partitions) or any(
                [await reader.position(tp) < targets[tp] for tp in partitions]):
            fetched = await reader.getmany(*partitions, timeout_ms=500, max_records=settings.batch_size)
            for tp in partitions:
                if tp not in targets and reader.highwater(tp) is not None:
                    targets[tp] = reader.highwater(tp)
            deliveries = [Delivery(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers or ()))
                          for tp, records in fetched.items() for r in records if r.offset < targets[tp]]
            if deliveries:
                result = await consumer.apply(deliveries)
                report.events += len(deliveries)
                report.applied += result.applied
                report.duplicates += result.duplicates
                report.dead += len(result.dead)
    finally:
        await reader.stop()


async def replay(settings: TrackerSettings, *, announce: bool = False) -> ReplayReport:
    schema, report = settings.schema_name, ReplayReport(announced=announce)
    guard = await asyncpg.connect(settings.database_url)
    try:
        if not await store.take_relay_lock(guard, schema):
            raise TrackerRunning(f"a tracker is running against schema {schema!r} (it holds the relay lock); stop it first")
        decisions = await store.decisions_of(guard, schema)
        await store.drop_schema(guard, schema)
        await migrate(settings.database_url, schema, MIGRATIONS)
        catalog = load_catalog()
        evaluator = TaskEvaluator(catalog, WorkingCalendar(), settings.retroactive_grace_working_days,
                                  settings.verification_grace_working_days)
        pool = await create_pool(settings.database_url, schema)
        producer = make_producer(settings)
        await producer.start()
        try:
            async with pool.acquire() as conn:
                await store.sync_catalog(conn, catalog)
                await store.restore_decisions(conn, decisions)
            consumer = LedgerConsumer(name="tracker-replay", pool=pool, producer=producer,
                                      handler=TrackerHandlers(catalog, evaluator, settings.clock),
                                      validate=validate_by_model, retry_budget_s=settings.retry_budget_s,
                                      time_window=settings.time_window())
            await _read_to_watermarks(settings, consumer, report)
            await reevaluate_all(pool, evaluator, settings.clock())
            if not announce:
                async with pool.acquire() as conn:
                    await store.mark_outbox_published(conn)
        finally:
            await producer.stop()
            await pool.close()
    finally:
        await guard.close()  # releases the relay lock with the session
    return report
