"""Transactional outbox: record a change event in the same transaction as the state change, then
relay it to Kafka.

Exactly one relay per schema is active at a time (a PostgreSQL advisory lock), and it publishes in
`seq` order, so events of one aggregate reach their partition in the order they were committed.
A crash between publish and marking can publish a row again: consumers dedupe on the CloudEvents
(source, id), which the row carries from the start, so the effect is never doubled.

Every change event is checked against its contract when its row is written, so one that breaks its
contract fails the writing transaction (InvalidEvent) and never reaches the table; the relay then
publishes the row as it was validated, without checking or re-encoding it again. The compiled check
(duban.events.fast) accepts and orjson writes the data; only what it refuses goes to the pydantic
model, which lists every failing field (docs/decisions/027-tracker-throughput.md).

A row that can never be published (the broker refuses its size, its stored form cannot be read) is
the row's fault, not the infrastructure's: it is parked (kept, marked with the reason, counted) and
the rows after it go on; `duban outbox parked` lists such rows and `duban outbox release` sends one
again once the cause is fixed. Only a lost connection or a timeout makes the relay retry."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import NamedTuple

import asyncpg
import orjson
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)
from prometheus_client import Counter, Gauge

from duban.events.fast import binary_record, fast_valid
from duban.events.models import Event
from duban.events.registry import build_event
from duban.pg import DATABASE_UNAVAILABLE

log = structlog.get_logger(__name__)

RELAYED = Counter("duban_outbox_relayed_total", "Outbox events published to Kafka", ["schema"])
BACKLOG = Gauge("duban_outbox_backlog", "Outbox events not yet published (parked ones aside)", ["schema"])
PARKED = Counter("duban_outbox_parked_total", "Outbox events parked because they can never be published", ["schema"])
PARKED_NOW = Gauge("duban_outbox_parked_rows", "Outbox events parked and not released", ["schema"])
RELAY_ERRORS = Counter("duban_outbox_relay_errors_total", "Relay cycles that failed and were retried", ["schema"])

# Failures the relay outlives: it reconnects and publishes the same rows again (same ids).
_RELAY_TRANSIENT = (*DATABASE_UNAVAILABLE, KafkaError)
# What the producer or the broker answers about one record that no retry can change.
_RECORD_REFUSED = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError, InvalidTopicError,
                   UnsupportedForMessageFormatError)


class _Parked(NamedTuple):
    seq: int
    reason: str


class Change(NamedTuple):
    """A change event to record: its model, subject (the aggregate, hence the Kafka key), data, event time."""

    model: type[Event]
    subject: str
    data: dict
    time: datetime


async def add_many(conn: asyncpg.Connection, changes: Sequence[Change]) -> list[uuid.UUID]:
    """Record several change events with one statement; their `seq` follows the order given, so
    the events of one aggregate are published in the order they are listed. Raises InvalidEvent,
    writing nothing, when one of them breaks its contract."""
    if not changes:
        return []
    ids = [uuid.uuid4() for _ in changes]
    rows = [_row(c, str(i)) for i, c in zip(ids, changes)]
    await conn.execute(
        "INSERT INTO outbox (event_id, type, subject, event_time, data)"
        " SELECT i, t, s, e, d::jsonb FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])"
        " WITH ORDINALITY AS u (i, t, s, e, d, n) ORDER BY n",
        ids, *(list(column) for column in zip(*rows, strict=True)))
    return ids


def _row(change: Change, event_id: str) -> tuple[str, str, datetime, str]:
    """(type, subject, time, data as JSON) of a change event that keeps its contract, else InvalidEvent.
    The compiled check costs a tenth of building the model (≈ 2 against ≈ 20 µs a change event)."""
    model = change.model
    event = {"specversion": "1.0", "type": model.TYPE, "id": event_id, "subject": change.subject,
             "time": change.time.isoformat(), "data": change.data}
    if hasattr(model, "SOURCE"):
        event["source"] = model.SOURCE
    if fast_valid(event):
        return model.TYPE, change.subject, change.time, orjson.dumps(change.data).decode()
    built = build_event(model, id=event_id, subject=change.subject, time=change.time, data=change.data)
    # Optional fields left at their default are omitted: the contract refuses null for them.
    return built.type, built.subject, built.time, built.data.model_dump_json(by_alias=True, exclude_defaults=True)


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, *, schema: str, topic: str, source: str,
                 batch_size: int = 500, idle_poll_s: float = 1.0) -> None:
        self.pool, self.producer = pool, producer
        self.schema, self.topic, self.source = schema, topic, source
        self.batch_size, self.idle_poll_s = batch_size, idle_poll_s
        self._wake = asyncio.Event()

    def _on_notify(self, *_args) -> None:
        self._wake.set()

    async def run(self, retry_after_s: float = 2.0) -> None:
        """Publish forever, surviving database and broker outages: after a failure the relay starts
        over from the oldest unpublished row, so rows published but not yet marked go out again
        with the same ids (consumers skip them by (source, id))."""
        while True:
            try:
                await self._run_holding_lock()
            except _RELAY_TRANSIENT as exc:
                RELAY_ERRORS.labels(self.schema).inc()
                log.warning("outbox relay failed; retrying", schema=self.schema, error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(retry_after_s)

    async def _run_holding_lock(self) -> None:
        """Only the holder of the schema's relay lock publishes."""
        async with self.pool.acquire() as conn:
            await conn.add_listener(f"{self.schema}_outbox", self._on_notify)
            try:
                while True:
                    if await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", f"duban-relay:{self.schema}"):
                        break
                    await asyncio.sleep(self.idle_poll_s)
                await self._count(conn)
                while True:
                    self._wake.clear()
                    published = await self.publish_pending(conn)
                    if published < self.batch_size:
                        try:
                            await asyncio.wait_for(self._wake.wait(), timeout=self.idle_poll_s)
                        except TimeoutError:
                            pass
            finally:
                # On a lost connection there is nothing to undo: the session took its lock with it.
                with contextlib.suppress(*_RELAY_TRANSIENT):
                    await conn.remove_listener(f"{self.schema}_outbox", self._on_notify)
                    await conn.execute("SELECT pg_advisory_unlock_all()")

    def _record(self, row: asyncpg.Record) -> tuple[bytes, bytes, list]:
        # The row holds what add_many validated: its data as the wire carries it, its time in UTC.
        time = row["event_time"].astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
        return binary_record(id=str(row["event_id"]), source=self.source, type=row["type"], subject=row["subject"],
                             time=time.encode("ascii"), data=row["data"].encode("utf-8"))

    async def publish_pending(self, conn: asyncpg.Connection) -> int:
        """Publish the oldest unpublished rows; returns how many were taken (published or parked)."""
        rows = await conn.fetch(
            "SELECT seq, event_id, type, subject, event_time, data FROM outbox"
            " WHERE published_at IS NULL AND parked_at IS NULL ORDER BY seq LIMIT $1", self.batch_size)
        if not rows:
            BACKLOG.labels(self.schema).set(0)
            return 0
        # Send the whole batch, then wait: aiokafka keeps per-partition order within one producer.
        sent, parked = [], []
        for row in rows:
            try:
                key, value, headers = self._record(row)
            except Exception as exc:  # noqa: BLE001 - building a record does no I/O: whatever fails is this row's
                parked.append(_Parked(row["seq"], f"unpublishable: {type(exc).__name__}: {exc}"))
                continue
            try:
                sent.append((row["seq"], await self.producer.send(self.topic, value, key=key, headers=headers)))
            except _RECORD_REFUSED as exc:
                parked.append(_Parked(row["seq"], f"refused by the producer: {type(exc).__name__}: {exc}"))
        outcomes = await asyncio.gather(*(future for _, future in sent), return_exceptions=True)
        for (seq, _), outcome in zip(sent, outcomes):
            if isinstance(outcome, _RECORD_REFUSED):
                parked.append(_Parked(seq, f"refused by the broker: {type(outcome).__name__}: {outcome}"))
            elif isinstance(outcome, BaseException):
                raise outcome  # the infrastructure's: run() retries the rows from the oldest unpublished
        published = [seq for (seq, _), outcome in zip(sent, outcomes) if not isinstance(outcome, BaseException)]
        async with conn.transaction():
            await conn.execute("UPDATE outbox SET published_at = now() WHERE seq = ANY($1::bigint[])", published)
            if parked:
                await conn.executemany("UPDATE outbox SET parked_at = now(), park_reason = $2 WHERE seq = $1", parked)
        RELAYED.labels(self.schema).inc(len(published))
        for row in parked:
            PARKED.labels(self.schema).inc()
            log.error("outbox row parked: it can never be published; later rows go on", schema=self.schema,
                      seq=row.seq, reason=row.reason)
        await self._count(conn)
        return len(rows)

    async def _count(self, conn: asyncpg.Connection) -> None:
        # Each count matches a partial index's predicate (duban/migrations/002), so neither scans the table.
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL AND parked_at IS NULL) AS backlog,"
            " (SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL AND published_at IS NULL) AS parked")
        BACKLOG.labels(self.schema).set(counts["backlog"])
        PARKED_NOW.labels(self.schema).set(counts["parked"])


# --- operators: `duban outbox` ---------------------------------------------------------------------


async def parked_rows(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """The parked rows of the connection's schema, oldest first."""
    return await conn.fetch("SELECT seq, event_id, type, subject, event_time, parked_at, park_reason FROM outbox"
                            " WHERE parked_at IS NOT NULL AND published_at IS NULL ORDER BY seq")


async def release(conn: asyncpg.Connection, seq: int) -> bool:
    """Hand a parked row back to the relay (after its cause was fixed); False when no such row is parked."""
    return await conn.fetchval("UPDATE outbox SET parked_at = NULL, park_reason = NULL"
                               " WHERE seq = $1 AND parked_at IS NOT NULL AND published_at IS NULL RETURNING true",
                               seq) or False
