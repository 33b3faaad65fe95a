"""The shape shared by the stream processors (tracker, metrics, notifier): a FastAPI process whose
lifespan runs a faust consumer that applies events through the ledger, optional side streams, an
optional outbox relay, and the ops endpoints. Each service supplies only its domain: handler,
routers, start-up work."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg
import structlog
from fastapi import APIRouter, FastAPI

from duban import auth
from duban.broker import BrokerProbe, make_faust_app, make_producer, raw_topic
from duban.consumer import BatchHandler, BatchResult, Handler, LedgerConsumer, attach_agent
from duban.events.models import Event
from duban.events.registry import validate_or_raise
from duban.logs import configure_logging
from duban.ops import Liveness, add_ops_routes
from duban.outbox import OutboxRelay
from duban.pg import create_pool
from duban.problems import install_problem_handlers
from duban.settings import ServiceSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SideStream:
    """A second input: only events of `models` from `topic`, read in a consumer group of their own and
    applied through the service's handler and ledger (docs/decisions/004-metrics-indicator-reports.md)."""

    name: str
    group: str
    topic: str
    models: tuple[type[Event], ...]


@dataclass
class StreamService:
    name: str
    settings: ServiceSettings
    schema: str
    group: str
    source_topic: str
    make_handler: Callable[[asyncpg.Pool], Handler | BatchHandler]
    routers: Sequence[APIRouter] = ()
    on_start: Callable[[asyncpg.Pool], Awaitable[None]] | None = None
    relay_topic: str | None = None
    batch_size: int = 500
    background: list[Callable[[asyncpg.Pool], Awaitable[None]]] = field(default_factory=list)
    after_batch: Callable[[BatchResult], None] | None = None
    # How long transient failures (database, broker) are retried before the process exits unacknowledged.
    retry_budget_s: float = 60.0
    # How inbound events are checked against their contracts (duban.consumer.validate_by_model is faster).
    validate: Callable[[dict], dict] = validate_or_raise
    side_streams: Sequence[SideStream] = ()

    def create_app(self) -> FastAPI:
        configure_logging(self.name, level=self.settings.log_level, json=self.settings.log_json)
        liveness = Liveness(self.settings.liveness_stale_after_s)
        state: dict = {}

        @asynccontextmanager
        async def lifespan(app: FastAPI):
            auth.install(app, self.settings)  # no key to check tokens with: refuse to start rather than run open
            pool = await create_pool(self.settings.database_url, self.schema)
            producer = make_producer(self.settings)
            await producer.start()
            app.state.pool = state["pool"] = pool
            topics = [self.source_topic] + ([self.relay_topic] if self.relay_topic else [])
            state["broker"] = BrokerProbe(producer.client, topics)
            if self.on_start:
                await self.on_start(pool)
            handler = self.make_handler(pool)

            def consuming(name: str, group: str, topic: str, only: tuple[type[Event], ...] | None = None):
                app_ = make_faust_app(self.settings, group)
                consumer = LedgerConsumer(name=name, pool=pool, producer=producer, handler=handler,
                                          validate=self.validate, retry_budget_s=self.retry_budget_s,
                                          time_window=self.settings.time_window())
                if self.after_batch:
                    consumer.on_applied.append(self.after_batch)
                attach_agent(app_, raw_topic(app_, topic), consumer, batch_size=self.batch_size, only=only)
                return app_

            faust_app = consuming(self.name, self.group, self.source_topic)
            side_apps = [consuming(s.name, s.group, s.topic, s.models) for s in self.side_streams]
            state["faust"] = faust_app
            tasks = [asyncio.create_task(job(pool), name=job.__name__) for job in self.background]
            if self.relay_topic:
                relay = OutboxRelay(pool, producer, schema=self.schema, topic=self.relay_topic,
                                    source=f"/services/{self.name}")
                tasks.append(asyncio.create_task(relay.run(), name="outbox-relay"))
            tasks.append(asyncio.create_task(liveness.beat_every(
                1.0, lambda: not any(a.should_stop for a in (faust_app, *side_apps))
                and not any(t.done() for t in tasks[:-1])), name="heartbeat"))
            await faust_app.start()
            for side_app in side_apps:
                await side_app.start()
            log.info("started", topic=self.source_topic, group=self.group, port=self.settings.http_port)
            try:
                yield
            finally:
                # Stop consuming first: faust commits the offsets of the batches already applied.
                for side_app in side_apps:
                    await side_app.stop()
                await faust_app.stop()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await producer.stop()
                await pool.close()
                log.info("stopped")

        app = FastAPI(title=f"Duban {self.name}", lifespan=lifespan)
        install_problem_handlers(app)
        for router in self.routers:
            app.include_router(router)

        async def database_answers() -> None:
            await state["pool"].fetchval("SELECT 1")

        async def consumer_joined() -> None:
            faust_app = state["faust"]
            if faust_app.rebalancing or not faust_app.consumer.assignment():
                raise RuntimeError("consumer has no partitions assigned yet")

        async def broker_answers() -> None:
            await state["broker"].check()

        add_ops_routes(app, liveness, {"postgresql": database_answers, "kafka": broker_answers,
                                       "kafka-consumer": consumer_joined})
        return app
