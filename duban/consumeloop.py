"""The stream processors' consumer: an aiokafka group member that feeds a LedgerConsumer batch by
batch and commits each batch's offsets once its transaction has committed.

What it keeps (docs/decisions/024-consumer-runtime-speed.md):
- offsets are committed by hand, after the batch took effect; what was applied and not committed
  is redelivered and skipped by the ledger (exactly-once effect);
- one loop applies one batch at a time, in fetch order, so one key's events (one partition) stay in
  order; the next batch is fetched and decoded while PostgreSQL works on the current one;
- a rebalance waits for the batch in flight: the revocation takes the same lock as apply-and-commit,
  so the offsets of what was applied are committed before the partitions go. No batch starts while
  the group rebalances, and of a batch fetched before, only the partitions still owned afterwards
  are applied; the others are redelivered to their new owner from the committed offsets;
- record faults are dead-lettered and infrastructure faults retried or the process exits
  uncommitted, both by LedgerConsumer.apply, which also finishes a batch interrupted by a stop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from duban.broker import kafka_client_options
from duban.consumer import Delivery, LedgerConsumer, PreparedBatch
from duban.settings import ServiceSettings

log = structlog.get_logger(__name__)

# How long a stopping consumer waits for the offset commit of the batch it just applied.
COMMIT_GRACE_S = 10.0


def make_consumer(settings: ServiceSettings, group: str, *, max_records: int) -> AIOKafkaConsumer:
    """A group member that commits only by hand, starting a new group from the earliest offset."""
    return AIOKafkaConsumer(
        **kafka_client_options(settings),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        max_poll_records=max_records,
        rebalance_timeout_ms=int(settings.kafka_rebalance_timeout_s * 1000),
        session_timeout_ms=int(settings.kafka_session_timeout_s * 1000),
        heartbeat_interval_ms=int(min(3.0, settings.kafka_session_timeout_s / 3) * 1000),
    )


@dataclass
class _Fetched:
    batch: PreparedBatch
    offsets: dict[TopicPartition, int]  # the next offset of each partition, to commit once applied

    def within(self, owned: set[TopicPartition]) -> _Fetched:
        """The part of the batch from the partitions in `owned`."""
        if owned.issuperset(self.offsets):
            return self

        def mine(delivery: Delivery) -> bool:
            return TopicPartition(delivery.topic, delivery.partition) in owned

        batch = self.batch
        return _Fetched(replace(batch, deliveries=[d for d in batch.deliveries if mine(d)],
                                events=[e for e in batch.events if mine(e.delivery)],
                                dead=[(d, err) for d, err in batch.dead if mine(d)]),
                        {tp: offset for tp, offset in self.offsets.items() if tp in owned})


class ConsumeLoop(ConsumerRebalanceListener):
    """Consumes `topic` in `group` through `consumer`; `wanted` picks the deliveries to apply (the
    others are committed past unrecorded)."""

    def __init__(self, settings: ServiceSettings, *, group: str, topic: str, consumer: LedgerConsumer,
                 batch_size: int = 500, wanted: Callable[[Delivery], bool] | None = None) -> None:
        self.topic, self.ledger, self.batch_size, self.wanted = topic, consumer, batch_size, wanted
        self.kafka = make_consumer(settings, group, max_records=batch_size)
        self._settled = asyncio.Event()  # set while partitions are assigned and no rebalance is under way
        self._applying = asyncio.Lock()

    async def start(self) -> None:
        await self.kafka.start()
        self.kafka.subscribe([self.topic], listener=self)

    def owns_partitions(self) -> bool:
        return self._settled.is_set() and bool(self.kafka.assignment())

    async def run(self) -> None:
        """Apply batches until cancelled; a batch in flight is finished and committed first."""
        ahead = asyncio.ensure_future(self._fetch())
        try:
            while True:
                fetched = await ahead
                # Fetch and decode the next batch while PostgreSQL works on this one.
                ahead = asyncio.ensure_future(self._fetch())
                await self._apply(fetched)
        except Exception:
            # Nothing was committed past what was applied; /healthz goes stale and the supervisor restarts.
            log.exception("the consumer stopped", topic=self.topic)
            raise
        finally:
            ahead.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ahead

    async def _apply(self, fetched: _Fetched) -> None:
        while True:
            await self._settled.wait()
            async with self._applying:
                if not self._settled.is_set():
                    continue  # a rebalance began meanwhile: wait for its outcome
                fetched = fetched.within(self.kafka.assignment())
                try:
                    if fetched.batch.deliveries:
                        await self.ledger.apply(fetched.batch)
                finally:
                    # Reached normally, or by a stop once LedgerConsumer.apply finished the batch
                    # (it exits the process rather than leave one unapplied).
                    await self._commit(fetched.offsets)
                return

    async def stop(self) -> None:
        """Leave the group (after `run` was cancelled and has committed what it applied)."""
        await self.kafka.stop()

    async def _fetch(self) -> _Fetched:
        while True:
            records = await self.kafka.getmany(timeout_ms=1000, max_records=self.batch_size)
            if not records:
                continue
            deliveries = [Delivery(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers or ()))
                          for batch in records.values() for r in batch]
            if self.wanted is not None:
                deliveries = [d for d in deliveries if self.wanted(d)]
            offsets = {tp: batch[-1].offset + 1 for tp, batch in records.items()}
            return _Fetched(self.ledger.prepare(deliveries), offsets)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit `offsets`; a stop that arrives meanwhile lets the commit finish before leaving."""
        if not offsets:
            return
        commit = asyncio.ensure_future(self.kafka.commit(offsets))
        try:
            await asyncio.shield(commit)
        except asyncio.CancelledError:
            await asyncio.wait({commit}, timeout=COMMIT_GRACE_S)
            if commit.done() and commit.exception() is not None:
                log.warning("offset commit failed while stopping; the batch will be redelivered and skipped",
                            error=repr(commit.exception()))
            raise
        except KafkaError as exc:
            # The batch took effect; uncommitted, it is redelivered and the ledger skips it.
            log.warning("offset commit failed; the batch will be redelivered and skipped", error=repr(exc))

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # Waits for the batch in flight: its offsets are committed before the partitions go.
        self._settled.clear()
        async with self._applying:
            pass

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._settled.set()
        log.info("partitions assigned", topic=self.topic, partitions=sorted(tp.partition for tp in assigned))
