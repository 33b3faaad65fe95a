"""Transactional outbox: record a change event in the same transaction as the state change, then
relay it to Kafka.

Exactly one relay per schema is active at a time (a PostgreSQL advisory lock), and it publishes in
`seq` order, so events of one aggregate reach their partition in the order they were committed.
A crash between publish and marking can publish a row again: consumers dedupe on the CloudEvents
(source, id), which the row carries from the start, so the effect is never doubled."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timezone

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge

from duban.events.kafka import to_kafka

log = structlog.get_logger(__name__)

RELAYED = Counter("duban_outbox_relayed_total", "Outbox events published to Kafka", ["schema"])
BACKLOG = Gauge("duban_outbox_backlog", "Outbox events not yet published", ["schema"])


async def add(conn: asyncpg.Connection, *, type: str, subject: str, data: dict, time: datetime | None = None) -> uuid.UUID:
    event_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO outbox (event_id, type, subject, event_time, data) VALUES ($1, $2, $3, $4, $5::jsonb)",
        event_id, type, subject, time or datetime.now(timezone.utc), json.dumps(data, ensure_ascii=False, default=str),
    )
    return event_id


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, *, schema: str, topic: str, source: str,
                 batch_size: int = 500, idle_poll_s: float = 1.0) -> None:
        self.pool, self.producer = pool, producer
        self.schema, self.topic, self.source = schema, topic, source
        self.batch_size, self.idle_poll_s = batch_size, idle_poll_s
        self._wake = asyncio.Event()
        self.last_cycle = 0.0

    def _on_notify(self, *_args) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Publish forever; only the holder of the schema's relay lock publishes."""
        async with self.pool.acquire() as conn:
            await conn.add_listener(f"{self.schema}_outbox", self._on_notify)
            try:
                while True:
                    if await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", f"duban-relay:{self.schema}"):
                        break
                    await asyncio.sleep(self.idle_poll_s)
                while True:
                    self._wake.clear()
                    published = await self.publish_pending(conn)
                    self.last_cycle = asyncio.get_running_loop().time()
                    if published < self.batch_size:
                        try:
                            await asyncio.wait_for(self._wake.wait(), timeout=self.idle_poll_s)
                        except TimeoutError:
                            pass
            finally:
                await conn.remove_listener(f"{self.schema}_outbox", self._on_notify)
                await conn.execute("SELECT pg_advisory_unlock_all()")

    async def publish_pending(self, conn: asyncpg.Connection) -> int:
        rows = await conn.fetch(
            "SELECT seq, event_id, type, subject, event_time, data FROM outbox"
            " WHERE published_at IS NULL ORDER BY seq LIMIT $1", self.batch_size)
        if not rows:
            BACKLOG.labels(self.schema).set(0)
            return 0
        # Send the whole batch, then wait: aiokafka keeps per-partition order within one producer.
        futures = []
        for row in rows:
            key, value, headers = to_kafka({
                "specversion": "1.0", "id": str(row["event_id"]), "source": self.source, "type": row["type"],
                "subject": row["subject"], "time": row["event_time"].isoformat(),
                "datacontenttype": "application/json", "data": json.loads(row["data"]),
            })
            futures.append(await self.producer.send(self.topic, value, key=key, headers=headers))
        await asyncio.gather(*futures)
        await conn.execute("UPDATE outbox SET published_at = now() WHERE seq = ANY($1::bigint[])", [r["seq"] for r in rows])
        RELAYED.labels(self.schema).inc(len(rows))
        BACKLOG.labels(self.schema).set(await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
        return len(rows)
