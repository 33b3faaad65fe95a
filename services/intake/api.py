"""Intake's HTTP surface: POST /v1/events. Department systems POST CloudEvents with their
department's key; intake checks who is speaking, what they may say and that it keeps its contract,
drops repeats, publishes the rest to Kafka in binary mode and answers 202 only once the broker
acknowledged them.

The order of the checks is the order of their cost: key (401), media type (415), body size (413),
JSON (400), batch size (413), rate (429), contract (400), time window (400), catalog rules (403), repeats (409),
broker (503).
"""

import asyncio
import math
from collections import Counter as Tally
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import Counter
from pydantic import BaseModel

from duban import auth
from duban.events import InvalidEvent, parse_event, to_kafka
from duban.events.fast import Record, fast_record
from duban.events.models import department_source
from duban.events.timing import TimeWindow
from duban.pg import DATABASE_UNAVAILABLE
from duban.problems import Problem
from services.intake import keys, openapi, store
from services.intake.binding import events_from, read_body
from services.intake.domain import ledger
from services.intake.domain.ratelimit import RateLimiter
from services.intake.domain.rules import Referee
from services.intake.settings import IntakeSettings

log = structlog.get_logger(__name__)

ACCEPTED = Counter("duban_intake_events_accepted_total", "Events published to Kafka", ["type"])
DUPLICATES = Counter("duban_intake_events_duplicate_total", "Repeats of accepted events, answered and not published")
REJECTED = Counter("duban_intake_requests_rejected_total", "Requests refused, by problem type", ["reason"])


class Accepted(BaseModel):
    """The events published now, and the repeats of events accepted before (not published again)."""

    accepted: list[str]
    duplicates: list[str]


def _event_id(event: Any) -> str | None:
    return event.get("id") if isinstance(event, dict) and isinstance(event.get("id"), str) else None


@dataclass(frozen=True)
class Intake:
    """What the route works with besides the pool and producer: app.state.intake, set by create_app."""

    settings: IntakeSettings
    referee: Referee
    limiter: RateLimiter
    time_window: TimeWindow


def count_refusals(app: FastAPI) -> None:
    """Count each refusal by its problem type, then answer as every service does."""
    for kind_of in (Problem, *DATABASE_UNAVAILABLE):
        app.add_exception_handler(kind_of, _counted(app.exception_handlers[kind_of]))


def _counted(answer):
    async def counted(request: Request, exc: Exception):
        response = await answer(request, exc)
        REJECTED.labels(exc.kind if isinstance(exc, Problem) else "database-unavailable").inc()
        return response

    return counted


api_key = HTTPBearer(auto_error=False, scheme_name="departmentKey",
                     description="The department's API key (`duban keys create <department>`): dbk_<department>_…")


async def caller(request: Request,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(api_key)],
                 _token: Annotated[HTTPAuthorizationCredentials | None, Depends(auth.bearer)]) -> str:
    """The department whose key, or whose bearer token (JWT, role department), signs the request."""
    if credentials is None:
        raise Problem(401, "unauthenticated", "send the department's API key as `Authorization: Bearer <key>`",
                      headers={"WWW-Authenticate": 'Bearer realm="duban-intake"'})
    if not keys.looks_like_token(credentials.credentials) and credentials.credentials.count(".") == 2:
        principal = await request.app.state.verifier.verify(credentials.credentials)
        if principal.department is None:
            raise Problem(403, "forbidden", f"only a department posts events; this token's role is {principal.role}")
        return principal.department
    department = await keys.authenticate(request.app.state.pool, credentials.credentials)
    if department is None:
        raise Problem(401, "unauthenticated", "the API key is unknown, revoked or expired",
                      headers={"WWW-Authenticate": 'Bearer realm="duban-intake", error="invalid_token"'})
    return department


router = APIRouter()


# The request body is described by services/intake/openapi.py: the handler reads the raw body itself.
@router.post("/v1/events", status_code=202, response_model=Accepted, summary="Post department events",
             responses=openapi.problem_responses())
async def post_events(request: Request, department: Annotated[str, Depends(caller)]) -> Accepted:
    intake: Intake = request.app.state.intake
    settings = intake.settings
    body = await read_body(request, settings.max_body_bytes)
    events = events_from(request.headers, body)
    if len(events) > settings.max_batch_events:
        raise Problem(413, "batch-too-large", f"at most {settings.max_batch_events} events per batch,"
                      f" this one has {len(events)}")
    wait = intake.limiter.take(department, len(events))
    if wait:
        raise Problem(429, "rate-limited", f"{department} may post {settings.rate_limit_per_s:g} events per"
                      f" second (bursts of {settings.rate_limit_burst}); resend after Retry-After",
                      headers={"Retry-After": str(math.ceil(wait))})
    records = _contract_checked(events)
    _in_time_window(intake.time_window, events)
    _authorised(intake.referee, department, events)
    source = department_source(department)
    digests = [ledger.payload_hash(event) for event in events]
    fresh, duplicates, conflicts = ledger.sort_out(
        events, digests, await store.known(request.app.state.pool, source, [e["id"] for e in events]))
    if conflicts:
        raise Problem(409, "id-conflict", "an id was used before for a different event: a retry must repeat"
                      " the event exactly, a new event needs a new id", events=conflicts)
    acked = await _publish(request.app.state.producer, settings.topic_dept_events,
                           [events[index]["type"] for index in fresh], [records[index] for index in fresh],
                           settings.publish_timeout_s)
    await store.record(request.app.state.pool, source,
                        [(events[index], digests[index]) for index, ok in zip(fresh, acked) if ok])
    if not all(acked):
        raise Problem(503, "broker-unavailable", "the broker did not acknowledge every event; resend the same"
                      " request: events already accepted come back as duplicates, not twice",
                      headers={"Retry-After": str(settings.retry_after_s)})
    DUPLICATES.inc(len(duplicates))
    return Accepted(accepted=[events[index]["id"] for index in fresh], duplicates=duplicates)


def _contract_checked(events: list[Any]) -> list[Record]:
    """The Kafka record of every event, or 400 listing each failing field of each failing event.

    The compiled check and direct record (duban.events.fast) take the events that keep their
    contract; any other goes the reference way, parse_event then to_kafka, which lists its errors."""
    records, invalid = [], []
    for index, event in enumerate(events):
        record = fast_record(event)
        if record is None:
            try:
                record = to_kafka(parse_event(event))
            except InvalidEvent as error:
                invalid.append({"index": index, "id": _event_id(event), "errors": [e.as_dict() for e in error.errors]})
                continue
        records.append(record)
    if invalid:
        raise Problem(400, "invalid-events", "events break their contract; nothing was accepted: fix them and resend"
                      " the whole request", events=invalid)
    return records


def _in_time_window(window: TimeWindow, events: list[dict[str, Any]]) -> None:
    """400 when an event's instants lie before the floor or ahead of the clock: the contract admits
    them, but a report dated 9999-12-31 would stay its task's latest for ever (duban/events/timing.py)."""
    refused = [{"index": index, "id": event["id"], "errors": [e.as_dict() for e in errors]}
               for index, event in enumerate(events) if (errors := window.errors(event))]
    if refused:
        raise Problem(400, "event-time-out-of-range", f"event instants must lie between {window.floor.isoformat()}"
                      f" and {window.max_skew} ahead of the clock; nothing was accepted: fix them and resend"
                      " the whole request", events=refused)


def _authorised(referee: Referee, department: str, events: list[dict[str, Any]]) -> None:
    forbidden = [{"index": index, "id": event["id"], "reason": reason}
                 for index, event in enumerate(events) if (reason := referee.refusal(department, event))]
    if forbidden:
        raise Problem(403, "forbidden", f"{department} may not post these events; nothing was accepted",
                      events=forbidden)


async def _publish(producer: AIOKafkaProducer, topic: str, types: list[str], records: list[Record],
                   timeout_s: float) -> list[bool]:
    """Publish in order, wait at most `timeout_s` in all for the broker, and say which events it acknowledged:
    all of them, unless it failed or hung, and then possibly some (a batch spans partitions, which fail
    independently). A silent broker holds `send` (metadata, buffer space) and a batch retried on a new,
    equally silent connection past the producer's own request timeout: only a deadline over the whole
    wait bounds the answer (decision 030)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    futures: list[asyncio.Future] = []
    try:
        async with asyncio.timeout_at(deadline):
            for key, value, headers in records:
                futures.append(await producer.send(topic, value, key=key, headers=headers))
    except (KafkaError, TimeoutError) as error:
        log.warning("publish failed", error=repr(error))
    if pending := [future for future in futures if not future.done()]:
        # asyncio.wait leaves the records' futures alone: the producer still owns those it has not settled.
        await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
    acked = []
    for record, future in zip(records, futures):
        acked.append(future.done() and not future.cancelled() and future.exception() is None)
        if not future.done():
            # It may still reach the broker after the 503; the resend is then a duplicate the consumers'
            # ledger skips. Its outcome is retrieved so that a late failure is not reported as unhandled.
            future.add_done_callback(_settled_late)
        elif not acked[-1]:
            log.warning("publish failed", error=repr(None if future.cancelled() else future.exception()),
                        event_id=_record_id(record))
    acked += [False] * (len(records) - len(acked))  # never handed to the producer
    if not all(acked):
        # The producer refreshes its view of partitions and leaders only on errors it deems
        # metadata errors, or every metadata_max_age_ms: after a broker's restart its stale view
        # could keep failing sends long after the broker is back.
        producer.client.force_metadata_update()
    for type_, count in Tally(type_ for type_, ok in zip(types, acked) if ok).items():
        ACCEPTED.labels(type_).inc(count)
    return acked


def _settled_late(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.info("a record given up on was not published either", error=repr(future.exception()))


def _record_id(record: Record) -> str:
    return next(value.decode("utf-8") for name, value in record[2] if name == "ce_id")
