"""Intake: the HTTP front door. Department systems POST CloudEvents; intake validates them against
the contracts and publishes them to Kafka in binary mode, answering 202 only once the broker
acknowledged every event."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

import structlog
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter

from duban.broker import make_producer
from duban.events.kafka import to_kafka
from duban.events.registry import validate_event
from duban.logs import configure_logging
from duban.ops import Liveness, add_ops_routes
from duban.problems import Problem, install_problem_handlers
from services.intake.settings import IntakeSettings

log = structlog.get_logger(__name__)

ACCEPTED = Counter("duban_intake_events_accepted_total", "Events published to Kafka", ["type"])
REJECTED = Counter("duban_intake_events_rejected_total", "Events refused", ["reason"])

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


def _parse_body(content_type: str, body: bytes) -> list[dict]:
    media_type = content_type.split(";")[0].strip().lower()
    if media_type not in (STRUCTURED, BATCH):
        raise Problem(415, "unsupported-media-type", f"send {STRUCTURED} or {BATCH}, not {media_type or 'nothing'}")
    try:
        parsed = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Problem(400, "malformed-json", f"the body is not JSON: {exc}") from exc
    if media_type == BATCH:
        if not isinstance(parsed, list) or not parsed:
            raise Problem(400, "malformed-batch", "a batch is a non-empty JSON array of CloudEvents")
        return parsed
    if not isinstance(parsed, dict):
        raise Problem(400, "malformed-event", "a structured CloudEvent is a JSON object")
    return [parsed]


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    configure_logging("intake", level=settings.log_level, json=settings.log_json)
    liveness = Liveness(settings.liveness_stale_after_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        producer = make_producer(settings)
        await producer.start()
        app.state.producer = producer
        heartbeat = asyncio.create_task(liveness.beat_every(1.0, lambda: True))
        log.info("started", port=settings.http_port)
        try:
            yield
        finally:
            heartbeat.cancel()
            await producer.stop()  # flushes what is in flight before closing

    app = FastAPI(title="Duban intake", lifespan=lifespan)
    install_problem_handlers(app)

    @app.post("/v1/events", status_code=202)
    async def post_events(request: Request) -> JSONResponse:
        events = _parse_body(request.headers.get("content-type", ""), await request.body())
        if len(events) > settings.max_batch_events:
            raise Problem(413, "batch-too-large", f"at most {settings.max_batch_events} events per batch")
        failures = []
        for index, event in enumerate(events):
            errors = validate_event(event) if isinstance(event, dict) else [{"path": "", "message": "not an object"}]
            if errors:
                failures.append({"index": index, "errors": [e if isinstance(e, dict) else e.as_dict() for e in errors]})
        if failures:
            REJECTED.labels("invalid").inc(len(events))
            raise Problem(400, "invalid-events", "the batch was refused whole: fix the listed events and resend",
                          invalid=failures)
        producer: AIOKafkaProducer = request.app.state.producer
        futures = []
        for event in events:
            key, value, headers = to_kafka(event)
            futures.append(await producer.send(settings.topic_dept_events, value, key=key, headers=headers))
        await asyncio.gather(*futures)
        for event in events:
            ACCEPTED.labels(event["type"]).inc()
        return JSONResponse({"accepted": [e["id"] for e in events]}, status_code=202)

    add_ops_routes(app, liveness, {"kafka": lambda: request_metadata(app)})
    return app


async def request_metadata(app: FastAPI) -> None:
    await app.state.producer.client.fetch_all_metadata()
