"""Applying a batch of Kafka events to PostgreSQL exactly once, and the faust agent that drives it.

The guarantees, in order:
1. Every event of a batch is applied in ONE transaction together with its ledger row
   (source, id); an event already in the ledger is skipped, so redelivery never doubles an effect.
2. An event that can never apply (undecodable, invalid, rejected by the domain) is dead-lettered
   with its reason and origin; the rest of the batch still applies.
3. Transient failures (database or broker unreachable) are retried; if they outlast the retry
   budget, or the process is asked to stop meanwhile, the process exits WITHOUT acknowledging
   the batch. faust acknowledges a batch when the agent leaves it, even by an exception, so
   leaving by exception would lose it; exiting makes the broker redeliver it instead."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
import faust
import structlog
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Histogram
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from duban.broker import send_dead_letter
from duban.events.kafka import from_kafka

log = structlog.get_logger(__name__)

APPLIED = Counter("duban_events_applied_total", "Events that took effect", ["consumer", "type"])
DUPLICATES = Counter("duban_events_duplicate_total", "Redelivered or repeated events skipped by the ledger", ["consumer"])
BATCH_SECONDS = Histogram("duban_consumer_batch_seconds", "Time to apply one batch", ["consumer"])

TRANSIENT_ERRORS = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                    asyncpg.DeadlockDetectedError, asyncpg.SerializationError, asyncio.TimeoutError)
# Exit code for "stopped with an unapplied batch": supervisors restart, the broker redelivers.
EXIT_UNAPPLIED = 75


class PermanentEventError(Exception):
    """The event can never take effect (bad data, unknown aggregate…): dead-letter it with this reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Delivery:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @classmethod
    def from_faust(cls, event: faust.EventT) -> Delivery:
        m = event.message
        return cls(m.topic, m.partition, m.offset, m.key, m.value, tuple(m.headers or ()))


@dataclass
class InboundEvent:
    """A decoded CloudEvent (structured form) and where it came from."""

    ce: dict
    delivery: Delivery

    @property
    def type(self) -> str:
        return self.ce["type"]


Handler = Callable[[asyncpg.Connection, InboundEvent], Awaitable[None]]
Decoder = Callable[[dict], dict]


@dataclass
class BatchResult:
    applied: int = 0
    duplicates: int = 0
    dead: list[tuple[Delivery, PermanentEventError]] = field(default_factory=list)


class LedgerConsumer:
    """Applies batches for one service: `handler(conn, event)` does the domain work inside the transaction."""

    def __init__(self, *, name: str, pool: asyncpg.Pool, producer: AIOKafkaProducer, handler: Handler,
                 validate: Decoder, retry_budget_s: float = 60.0) -> None:
        self.name, self.pool, self.producer, self.handler = name, pool, producer, handler
        self.validate = validate
        self.retry_budget_s = retry_budget_s
        self.on_applied: list[Callable[[BatchResult], None]] = []

    def decode(self, delivery: Delivery) -> InboundEvent:
        try:
            ce = from_kafka(delivery.key, delivery.value, list(delivery.headers))
        except Exception as exc:  # anything the binding rejects is unreadable for good
            raise PermanentEventError("undecodable", f"{type(exc).__name__}: {exc}") from exc
        try:
            ce = self.validate(ce)
        except PermanentEventError:
            raise
        except Exception as exc:
            raise PermanentEventError("invalid", str(exc)) from exc
        return InboundEvent(ce, delivery)

    async def apply(self, deliveries: Sequence[Delivery]) -> BatchResult:
        """Apply one batch, retrying transient failures; never returns with the batch unapplied."""
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(TRANSIENT_ERRORS), stop=stop_after_delay(self.retry_budget_s),
                wait=wait_exponential_jitter(initial=0.2, max=5.0), reraise=True,
            ):
                with attempt:
                    result = await self._apply_once(deliveries)
            await self._dead_letter(result.dead)
        except asyncio.CancelledError:
            self._exit_unapplied("stop requested while a batch was unapplied")
        except Exception as exc:
            self._exit_unapplied(f"{type(exc).__name__}: {exc}")
        for callback in self.on_applied:
            callback(result)
        return result

    def _exit_unapplied(self, why: str) -> None:
        log.error("batch not applied; exiting without acknowledging it so the broker redelivers", consumer=self.name, why=why)
        os._exit(EXIT_UNAPPLIED)

    async def _apply_once(self, deliveries: Sequence[Delivery]) -> BatchResult:
        result = BatchResult()
        decoded: list[InboundEvent] = []
        for delivery in deliveries:
            try:
                decoded.append(self.decode(delivery))
            except PermanentEventError as err:
                result.dead.append((delivery, err))
        with BATCH_SECONDS.labels(self.name).time():
            async with self.pool.acquire() as conn, conn.transaction():
                fresh = await self._claim(conn, decoded)
                result.duplicates = len(decoded) - len(fresh)
                for event in fresh:
                    # A savepoint per event lets one rejected event fall out without undoing the others.
                    try:
                        async with conn.transaction():
                            await self.handler(conn, event)
                    except PermanentEventError as err:
                        result.dead.append((event.delivery, err))
                        await conn.execute("DELETE FROM processed_events WHERE source = $1 AND id = $2",
                                           event.ce["source"], event.ce["id"])
                    else:
                        result.applied += 1
                        APPLIED.labels(self.name, event.type).inc()
        DUPLICATES.labels(self.name).inc(result.duplicates)
        return result

    @staticmethod
    async def _claim(conn: asyncpg.Connection, events: list[InboundEvent]) -> list[InboundEvent]:
        """Insert the ledger rows of the batch in one statement; returns the events seen for the first time,
        in delivery order (a key repeated inside the batch counts once)."""
        if not events:
            return []
        rows = await conn.fetch(
            "INSERT INTO processed_events (source, id, type, topic, kafka_partition, kafka_offset)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[])"
            " ON CONFLICT DO NOTHING RETURNING source, id",
            [e.ce["source"] for e in events], [e.ce["id"] for e in events], [e.type for e in events],
            [e.delivery.topic for e in events], [e.delivery.partition for e in events],
            [e.delivery.offset for e in events])
        new_keys = {(r["source"], r["id"]) for r in rows}
        fresh = []
        for event in events:
            key = (event.ce["source"], event.ce["id"])
            if key in new_keys:
                new_keys.discard(key)
                fresh.append(event)
        return fresh

    async def _dead_letter(self, dead: list[tuple[Delivery, PermanentEventError]]) -> None:
        for delivery, err in dead:
            log.warning("dead letter", consumer=self.name, reason=err.reason, detail=err.detail,
                        topic=delivery.topic, partition=delivery.partition, offset=delivery.offset)
            await send_dead_letter(
                self.producer, consumer=self.name, topic=delivery.topic, partition=delivery.partition,
                offset=delivery.offset, key=delivery.key, value=delivery.value, headers=delivery.headers,
                reason=err.reason, error=err.detail)


def attach_agent(app: faust.App, topic: faust.TopicT, consumer: LedgerConsumer, *,
                 batch_size: int = 500, within_s: float = 0.05) -> None:
    """Register the faust agent: take up to `batch_size` events (or what arrived within `within_s`)
    and apply them as one batch before faust acknowledges them."""

    async def agent(stream: faust.StreamT) -> None:
        async for events in stream.take_events(batch_size, within=within_s):
            await consumer.apply([Delivery.from_faust(e) for e in events])

    agent.__name__ = agent.__qualname__ = f"{consumer.name}_agent"
    app.agent(topic, name=f"{consumer.name}-apply")(agent)
