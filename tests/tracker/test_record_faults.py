"""A record's fault dead-letters the record and the batch goes on; only the infrastructure's stops it.

These events reach the handlers with the contract check switched off, as they would have under a
contract that let them through: what storage refuses must still fall out alone, dead-lettered."""

from __future__ import annotations

import collections
import json

import asyncpg
import pytest
from prometheus_client import REGISTRY

from duban.broker import ensure_topics
from duban.consumer import Delivery, LedgerConsumer, validate_by_model
from duban.events.kafka import to_kafka
from duban.events.timing import TimeWindow
from entrypoints.topics import read_dead_letters
from tests.tracker.conftest import Tracker, case_event, progress

pytestmark = pytest.mark.database


def raw_delivery(ce: dict, offset: int) -> Delivery:
    """The record a producer that skips the contract check would write: `data` as JSON, escapes and all."""
    placeholder = json.loads(json.dumps(ce).replace("\\u0000", "").replace("\\ud800", ""))
    placeholder["time"] = "2021-08-20T10:00:00+08:00"
    key, _, headers = to_kafka(placeholder)
    headers = [(name, ce["time"].encode() if name == "ce_time" else value) for name, value in headers]
    return Delivery("duban.dept-events", 0, offset, key, json.dumps(ce["data"]).encode(), tuple(headers))


def dead(reason: str) -> float:
    return REGISTRY.get_sample_value("duban_dead_letters_total",
                                     {"consumer": "tracker", "topic": "duban.dept-events", "reason": reason}) or 0


async def test_what_storage_refuses_is_dead_lettered_alone_and_the_rest_of_the_batch_applies(pool, producer):
    tracker = Tracker(pool, producer)
    tracker.consumer.validate = lambda ce: ce  # no contract check: storage is the last line
    first = progress("T07", "market-regulation", "2021-08-20 10:00", "in_progress", 10)
    nul = progress("T07", "market-regulation", "2021-08-21 10:00", "in_progress", 20, note="试运行\u0000中")
    surrogate = progress("T07", "market-regulation", "2021-08-22 10:00", "in_progress", 30, note="a\ud800b")
    beyond_utc = progress("T07", "market-regulation", "2021-08-20 10:00", "in_progress", 40)
    beyond_utc["time"] = "9999-12-31T23:59:59-14:00"  # year 10000 in UTC: no timestamptz holds it
    nul_case = case_event("opened", "N-1", "2021-08-20 10:00", {"reference": "（2021）\u0000"})
    last = progress("T07", "market-regulation", "2021-08-23 10:00", "in_progress", 50)
    before = dead("storage_refused")

    result = await tracker.consumer.apply([raw_delivery(e, i) for i, e in
                                           enumerate([first, nul, surrogate, beyond_utc, nul_case, last])])

    assert result.applied == 2
    assert [d.offset for d, _ in result.dead] == [1, 2, 3, 4]
    assert {e.reason for _, e in result.dead} <= {"storage_refused", "handler_failed"}
    assert dead("storage_refused") - before >= 3
    assert {r["id"] for r in await pool.fetch("SELECT id FROM processed_events")} == {first["id"], last["id"]}
    assert await pool.fetchval("SELECT percent FROM tasks WHERE id = 'T07'") == 50


async def test_instants_outside_the_window_are_dead_lettered(pool, producer):
    tracker = Tracker(pool, producer)
    tracker.consumer.time_window = TimeWindow()
    good = progress("T07", "market-regulation", "2021-08-20 10:00", "in_progress", 10)
    far = [progress("T07", "market-regulation", "2021-08-20 10:00", "in_progress", 90) for _ in range(3)]
    for event, time in zip(far, ["9999-12-31T00:00:00+08:00", "0001-01-01T00:00:00Z", "1900-01-01T08:00:00+08:00"]):
        event["time"] = time
    before = dead("time_out_of_range")
    result = await tracker.send(*far, good)
    assert result.applied == 1 and [e.reason for _, e in result.dead] == ["time_out_of_range"] * 3
    assert all("/time" in e.detail for _, e in result.dead)
    assert dead("time_out_of_range") - before == 3
    assert await pool.fetchval("SELECT percent FROM tasks WHERE id = 'T07'") == 10


async def test_a_per_event_handler_that_fails_on_the_data_dead_letters_that_event(pool, producer):
    async def handler(conn, event) -> None:
        await conn.execute("INSERT INTO task_reports (source, event_id, task_id, event_time, status, percent)"
                           " VALUES ($1, $2, $3, now(), 'in_progress', $4)",
                           event.ce["source"], event.ce["id"], event.ce["subject"], event.ce["data"]["percent"])
        await conn.execute("SELECT 100 / $1::int", event.ce["data"]["percent"])  # DivisionByZero: a DataError

    consumer = LedgerConsumer(name="tracker", pool=pool, producer=producer, handler=handler, validate=validate_by_model)
    events = [progress("T07", "market-regulation", "2021-08-20 10:00", "in_progress", p) for p in (10, 0, 30)]
    result = await consumer.apply([raw_delivery(e, i) for i, e in enumerate(events)])
    assert result.applied == 2 and [(d.offset, e.reason) for d, e in result.dead] == [(1, "storage_refused")]
    assert sorted(await pool.fetch("SELECT percent FROM task_reports")) == [(10,), (30,)]



async def test_values_storage_cannot_take_are_dead_lettered_once_each_and_the_stream_goes_on(
        pool, producer, kafka_bootstrap, unique_topics):
    """A value the client cannot encode (a str for an integer), a row the server refuses (class 23: an unknown
    task), the client-side DataError asyncpg reserves for bad query input: each is that record's fault, so it is
    dead-lettered on the real broker with the error, tried once and not retried, and the events after it apply."""
    settings = unique_topics.model_copy(update={"kafka_bootstrap": kafka_bootstrap})
    await ensure_topics(settings, [settings.topic_dept_events + settings.dead_letter_suffix])
    calls: collections.Counter[int] = collections.Counter()

    async def handler(conn, event) -> None:
        calls[event.delivery.offset] += 1
        if event.ce["data"].get("note") == "client-side":
            raise asyncpg.exceptions._base.DataError("invalid input for query argument $4: 'ten'")
        await conn.execute("INSERT INTO task_reports (source, event_id, task_id, event_time, status, percent)"
                           " VALUES ($1, $2, $3, now(), 'in_progress', $4)",
                           event.ce["source"], event.ce["id"], event.ce["subject"], event.ce["data"]["percent"])

    consumer = LedgerConsumer(name="tracker", pool=pool, producer=producer, handler=handler,
                              validate=lambda ce: ce, retry_budget_s=5)
    events = [progress("T07", "market-regulation", "2021-08-20 10:00", "in_progress", 10),
              progress("T07", "market-regulation", "2021-08-20 11:00", "in_progress", 15),
              progress("T07", "market-regulation", "2021-08-20 12:00", "in_progress", 20),
              progress("T07", "market-regulation", "2021-08-20 13:00", "in_progress", 30, note="client-side"),
              progress("T07", "market-regulation", "2021-08-20 14:00", "in_progress", 40)]

    deliveries = [raw_delivery(e, i)._replace(topic=settings.topic_dept_events) for i, e in enumerate(events)]
    deliveries[1] = deliveries[1]._replace(value=json.dumps({**events[1]["data"], "percent": "ten"}).encode())
    deliveries[2] = deliveries[2]._replace(key=b"T99", headers=tuple(
        (name, b"T99" if name == "ce_subject" else value) for name, value in deliveries[2].headers))

    result = await consumer.apply(deliveries)

    assert result.applied == 2 and calls == {0: 1, 1: 1, 2: 1, 3: 1, 4: 1}
    assert sorted(await pool.fetch("SELECT percent FROM task_reports")) == [(10,), (40,)]
    reader, letters = await read_dead_letters(settings, settings.topic_dept_events)
    await reader.stop()
    errors = {int(letter.header("dlq_origin_offset")): letter.header("dlq_error") for letter in letters}
    assert sorted(errors) == [1, 2, 3]
    assert "invalid input for query argument $4: 'ten'" in errors[1]
    assert errors[2].startswith("ForeignKeyViolationError")
    assert errors[3].startswith("DataError")
