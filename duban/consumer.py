"""Applying a batch of Kafka events to PostgreSQL exactly once (duban.consumeloop drives it).

The guarantees, in order:
1. Every event of a batch is applied in ONE transaction together with its ledger row
   (source, id); an event already in the ledger is skipped, so redelivery never doubles an effect.
2. An event that can never apply (undecodable, invalid, out of the time window, rejected by the
   domain, refused by storage) is dead-lettered with its reason and origin; the rest of the batch
   still applies. Whatever fails while ONE event is applied on its own, and is not one of the
   TRANSIENT_ERRORS, is that event's fault (docs/decisions/013-record-and-infrastructure-faults.md):
   a character or value PostgreSQL cannot hold, a change event that breaks its contract, a handler
   that cannot cope with the data. Only the infrastructure's faults stop the stream.
3. Transient failures (database or broker unreachable, the server shutting a connection down) are
   retried; if they outlast the retry budget the process exits WITHOUT committing the batch's
   offsets, so the broker redelivers it (the ledger skips whatever had committed).
4. Asked to stop mid-batch (SIGTERM), the consumer finishes the batch first, so the offsets
   committed on the way out are true; a batch that cannot finish exits uncommitted.

A handler is either a callable `handler(conn, event)`, run per event under a savepoint, or a
`BatchHandler`, which applies the whole batch with a few bulk statements; the per-event savepoint
path then only serves to isolate the rare event that the bulk statements could not take. What a
BatchHandler leaves to do after the commit (a counter, a log line about what changed) runs once the
batch's transaction has committed, and only for the attempt that did: an event is counted once even
when the batch fell back to one event at a time."""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Histogram
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from duban.broker import send_dead_letter
from duban.events.fast import fast_valid
from duban.events.kafka import read_record
from duban.events.registry import CONTRACTS, InvalidEvent, validate_or_raise
from duban.events.timing import TimeWindow
from duban.pg import refused_data, transient

log = structlog.get_logger(__name__)

APPLIED = Counter("duban_events_applied_total", "Events that took effect", ["consumer", "type"])
DUPLICATES = Counter("duban_events_duplicate_total", "Redelivered or repeated events skipped by the ledger", ["consumer"])
BATCH_SECONDS = Histogram("duban_consumer_batch_seconds", "Time to apply one batch", ["consumer"])

# Exit code for "stopped with an unapplied batch": supervisors restart, the broker redelivers.
EXIT_UNAPPLIED = 75


class PermanentEventError(Exception):
    """The event can never take effect (bad data, unknown aggregate…): dead-letter it with this reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def raise_if_infrastructure(conn: asyncpg.Connection, exc: Exception) -> None:
    """Re-raise what is not the event's fault: a transient error, or anything at all once the
    connection is gone (a terminated backend can surface as an odd error type before the conn says so)."""
    if transient(exc):
        raise exc
    if conn.is_closed():
        raise asyncpg.exceptions.ConnectionDoesNotExistError(f"the connection closed while applying: {exc!r}") from exc


def record_fault(exc: Exception) -> PermanentEventError:
    """The dead-letter reason for what failed while one event was applied alone (not a TRANSIENT_ERROR)."""
    if isinstance(exc, PermanentEventError):
        return exc
    if refused_data(exc) or isinstance(exc, UnicodeError):
        # CharacterNotInRepertoireError (NUL), NumericValueOutOfRangeError…, a not-null, check, foreign-key,
        # unique or exclusion violation, a value asyncpg cannot encode, a lone surrogate no encoding takes.
        return PermanentEventError("storage_refused", f"{type(exc).__name__}: {exc}")
    if isinstance(exc, InvalidEvent):
        return PermanentEventError("change_event_invalid", str(exc))
    return PermanentEventError("handler_failed", f"{type(exc).__name__}: {exc}")


class Delivery(NamedTuple):
    """Where a record came from, and its bytes (a named tuple: one is made per record)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


@dataclass(slots=True)
class InboundEvent:
    """A decoded CloudEvent (structured form), where it came from, and what a BatchHandler's `check` made of it."""

    ce: dict
    delivery: Delivery
    prepared: object = None

    @property
    def type(self) -> str:
        return self.ce["type"]


Handler = Callable[[asyncpg.Connection, InboundEvent], Awaitable[None]]
Decoder = Callable[[dict], dict]
AfterCommit = Callable[[], None]


@runtime_checkable
class BatchHandler(Protocol):
    """A handler that applies a whole batch at once.

    `check` refuses, without I/O, an event that can never apply (raise PermanentEventError), and returns
    what `apply_batch` will want of the event (or None), which the consumer keeps as `event.prepared`:
    work done once, however often the batch is applied. `apply_batch` applies checked events inside the
    caller's transaction and may itself raise PermanentEventError, which makes the consumer retry those
    events one at a time. It may return what is to happen once that transaction has committed
    (process-local effects: counters, log lines); the consumer runs it then, and drops it with an
    attempt that was rolled back."""

    def check(self, event: InboundEvent) -> object: ...

    async def apply_batch(self, conn: asyncpg.Connection, events: Sequence[InboundEvent]
                          ) -> Sequence[AfterCommit] | None: ...


def validate_by_model(event: dict) -> dict:
    """`event` itself when valid, else InvalidEvent: a drop-in for validate_or_raise at a fraction of
    its cost. The pydantic model decides first (tests/contracts keep every model equal to its JSON
    Schema); an event it refuses is judged by the schema, the published contract, whose verdict
    stands and whose error list goes into the dead letter."""
    contract = CONTRACTS.get(event.get("type"))
    if contract is not None:
        try:
            contract.model.model_validate(event)
            return event
        except ValueError:  # pydantic's ValidationError
            pass
    return validate_or_raise(event)


def validate_compiled(event: dict) -> dict:
    """`event` itself when valid, else InvalidEvent: the verdict of `validate_or_raise` at a fifth of
    `validate_by_model`'s cost. The compiled contract check (jsonschema-rs from the same files, which
    tests/contracts keep in agreement with the registry) accepts; only an event it refuses goes to the
    registry's check, whose error list goes into the dead letter."""
    return event if fast_valid(event) else validate_or_raise(event)


@dataclass
class PreparedBatch:
    """A batch decoded and checked, ready to apply: what can apply, and what never will."""

    deliveries: Sequence[Delivery]
    events: list[InboundEvent]
    dead: list[tuple[Delivery, PermanentEventError]]


@dataclass
class BatchResult:
    applied: int = 0
    duplicates: int = 0
    dead: list[tuple[Delivery, PermanentEventError]] = field(default_factory=list)
    after_commit: list[AfterCommit] = field(default_factory=list)


class LedgerConsumer:
    """Applies batches for one service: `handler(conn, event)` does the domain work inside the transaction."""

    def __init__(self, *, name: str, pool: asyncpg.Pool, producer: AIOKafkaProducer, handler: Handler | BatchHandler,
                 validate: Decoder, retry_budget_s: float = 60.0, stop_grace_s: float = 15.0,
                 time_window: TimeWindow | None = None) -> None:
        self.name, self.pool, self.producer, self.handler = name, pool, producer, handler
        self.validate, self.time_window = validate, time_window
        self.retry_budget_s, self.stop_grace_s = retry_budget_s, stop_grace_s
        self._batch_handler = isinstance(handler, BatchHandler)
        self.on_applied: list[Callable[[BatchResult], None]] = []

    def decode(self, delivery: Delivery) -> InboundEvent:
        try:
            ce = read_record(delivery.key, delivery.value, delivery.headers)
        except Exception as exc:  # anything the binding rejects is unreadable for good
            raise PermanentEventError("undecodable", f"{type(exc).__name__}: {exc}") from exc
        try:
            ce = self.validate(ce)
        except PermanentEventError:
            raise
        except Exception as exc:
            raise PermanentEventError("invalid", str(exc)) from exc
        if self.time_window is not None and (errors := self.time_window.errors(ce)):
            raise PermanentEventError("time_out_of_range", "; ".join(f"{e.path}: {e.message}" for e in errors))
        return InboundEvent(ce, delivery)

    def prepare(self, deliveries: Sequence[Delivery]) -> PreparedBatch:
        """Decode and check a batch without I/O; the events that can never apply are set apart."""
        events: list[InboundEvent] = []
        dead: list[tuple[Delivery, PermanentEventError]] = []
        for delivery in deliveries:
            try:
                event = self.decode(delivery)
                if self._batch_handler:
                    event.prepared = self.handler.check(event)
                events.append(event)
            except PermanentEventError as err:
                dead.append((delivery, err))
            except Exception as exc:  # noqa: BLE001 - a check that fails on this event's data is the event's fault
                dead.append((delivery, record_fault(exc)))
        return PreparedBatch(deliveries, events, dead)

    async def apply(self, batch: Sequence[Delivery] | PreparedBatch) -> BatchResult:
        """Apply one batch (prepared or not), retrying transient failures; never returns with the
        batch unapplied."""
        prepared = batch if isinstance(batch, PreparedBatch) else self.prepare(batch)
        work = asyncio.ensure_future(self._apply_with_retries(prepared))
        try:
            result = await asyncio.shield(work)
        except asyncio.CancelledError:
            # Stopping: let the batch finish, then leave; its offsets are committed on the way out.
            done, _ = await asyncio.wait({work}, timeout=self.stop_grace_s)
            if not done or work.exception() is not None:
                self._exit_unapplied("stop requested and the batch could not finish")
            self._after(work.result())
            raise
        except Exception as exc:
            self._exit_unapplied(f"{type(exc).__name__}: {exc}")
        self._after(result)
        return result

    def _after(self, result: BatchResult) -> None:
        for effect in result.after_commit:
            effect()
        for callback in self.on_applied:
            callback(result)

    async def _apply_with_retries(self, batch: PreparedBatch) -> BatchResult:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(transient), stop=stop_after_delay(self.retry_budget_s),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0), reraise=True,
            before_sleep=lambda state: log.warning(
                "batch failed transiently; retrying", consumer=self.name, attempt=state.attempt_number,
                error=repr(state.outcome.exception())),
        ):
            with attempt:
                result = await self._apply_once(batch)
        await self._dead_letter(result.dead)
        return result

    def _exit_unapplied(self, why: str) -> None:
        log.error("batch not applied; exiting without acknowledging it so the broker redelivers", consumer=self.name, why=why)
        os._exit(EXIT_UNAPPLIED)

    async def _apply_once(self, batch: PreparedBatch) -> BatchResult:
        result = BatchResult(dead=list(batch.dead))
        decoded = batch.events
        with BATCH_SECONDS.labels(self.name).time():
            async with self.pool.acquire() as conn, conn.transaction():
                fresh = await self._claim(conn, decoded)
                result.duplicates = len(decoded) - len(fresh)
                if fresh and self._batch_handler:
                    try:
                        async with conn.transaction():
                            after_commit = await self.handler.apply_batch(conn, fresh)
                    except Exception as exc:  # noqa: BLE001 - unless the infrastructure's, some event is at fault
                        raise_if_infrastructure(conn, exc)
                        await self._apply_each(conn, fresh, result)
                    else:
                        result.after_commit.extend(after_commit or ())
                        self._count_applied(fresh, result)
                else:
                    await self._apply_each(conn, fresh, result)
        DUPLICATES.labels(self.name).inc(result.duplicates)
        return result

    async def _apply_each(self, conn: asyncpg.Connection, events: Sequence[InboundEvent], result: BatchResult) -> None:
        # A savepoint per event lets one rejected event fall out without undoing the others.
        for event in events:
            after_commit = None
            try:
                async with conn.transaction():
                    if self._batch_handler:
                        after_commit = await self.handler.apply_batch(conn, [event])
                    else:
                        await self.handler(conn, event)
            except Exception as exc:  # noqa: BLE001 - alone under its savepoint, what fails is this event's fault
                raise_if_infrastructure(conn, exc)
                result.dead.append((event.delivery, record_fault(exc)))
                await conn.execute("DELETE FROM processed_events WHERE source = $1 AND id = $2",
                                   event.ce["source"], event.ce["id"])
            else:
                result.after_commit.extend(after_commit or ())
                self._count_applied([event], result)

    def _count_applied(self, events: Sequence[InboundEvent], result: BatchResult) -> None:
        result.applied += len(events)
        # One label lookup per event type in the batch, not one per event.
        for type_, n in collections.Counter(event.type for event in events).items():
            APPLIED.labels(self.name, type_).inc(n)

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

