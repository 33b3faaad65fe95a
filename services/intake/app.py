"""Intake's wiring: settings, pool, producer and the rules' state on app.state, the route of
services/intake/api.py, problem documents and the ops endpoints.

    .venv/bin/python -m services.intake.app > contracts/openapi/intake.json   (make openapi-intake)
"""

import asyncio
import json
import sys
from contextlib import asynccontextmanager
from functools import partial

import structlog
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from duban import auth
from duban.broker import BrokerProbe, make_producer
from duban.catalog import load_catalog
from duban.logs import configure_logging
from duban.ops import Liveness, add_ops_routes
from duban.pg import create_pool
from duban.problems import install_problem_handlers
from services.intake import api, openapi
from services.intake.domain.ratelimit import RateLimiter
from services.intake.domain.rules import Referee
from services.intake.settings import IntakeSettings

log = structlog.get_logger(__name__)


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    configure_logging("intake", level=settings.log_level, json=settings.log_json)
    app = FastAPI(title="Duban intake", version="1", lifespan=_lifespan,
                  description="The front door for department systems: CloudEvents in, Kafka out. See docs/intake.md.")
    app.state.intake = api.Intake(settings, Referee(load_catalog()),
                                  RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst),
                                  settings.time_window())
    app.state.liveness = liveness = Liveness(settings.liveness_stale_after_s)
    install_problem_handlers(app, retry_after_s=settings.retry_after_s)
    api.count_refusals(app)
    app.include_router(api.router)
    openapi.install(app, settings)
    add_ops_routes(app, liveness, {"database": partial(_database_answers, app),
                                   "kafka": partial(_broker_answers, app)})
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI):
    settings: IntakeSettings = app.state.intake.settings
    auth.install(app, settings)  # no key to check tokens with: refuse to start rather than run open
    pool = await create_pool(settings.database_url, settings.schema_name)
    producer = intake_producer(settings)
    try:
        await producer.start()
    except BaseException:
        await pool.close()
        raise
    app.state.pool, app.state.producer = pool, producer
    app.state.broker = BrokerProbe(producer.client, [settings.topic_dept_events])
    heartbeat = asyncio.create_task(app.state.liveness.beat_every(1.0, lambda: True))
    log.info("started", port=settings.http_port)
    try:
        yield
    finally:
        heartbeat.cancel()
        await producer.stop()  # flushes what is in flight before closing
        await pool.close()


async def _database_answers(app: FastAPI) -> None:
    await app.state.pool.fetchval("SELECT 1")


async def _broker_answers(app: FastAPI) -> None:
    await app.state.broker.check()


def intake_producer(settings: IntakeSettings) -> AIOKafkaProducer:
    """The producer intake publishes with (bench/intake.py measures the same one on its own).
    It gives up on a record about when the request does (decision 030)."""
    return make_producer(settings, request_timeout_ms=int(settings.publish_timeout_s * 1000))


def openapi_document() -> str:
    """The OpenAPI document as committed: the defaults' settings, whatever DUBAN_* says here."""
    document = create_app(IntakeSettings.model_construct()).openapi()
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(openapi_document())
