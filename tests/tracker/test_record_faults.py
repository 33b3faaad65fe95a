"""A record's fault dead-letters the record and the batch goes on; only the infrastructure's stops it.

These events reach the handlers with the contract check switched off, as they would have under a
contract that let them through: what storage refuses must still fall out alone, dead-lettered."""

from __future__ import annotations

import collections
import json
from datetime import datetime, timedelta, timezone

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
    assert [e.reason for _, e in result.dead] == ["storage_refused"] * 4
    assert dead("storage_refused") - before == 4
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


# Each record of the next test makes the handler's row break one rule of `periods`: the reason its dead letter
# must give, and how its error begins (asyncpg's class, or the codec's own error that COPY raises unwrapped).
REFUSALS = [
    ("not-null", {"percent": None}, "storage_refused", "NotNullViolationError"),
    ("check", {"percent": 150}, "storage_refused", "CheckViolationError"),
    ("foreign key", {"task": "T99"}, "storage_refused", "ForeignKeyViolationError"),
    ("unique", {"ref": "first"}, "storage_refused", "UniqueViolationError"),
    ("exclusion", {"day": 1}, "storage_refused", "ExclusionViolationError"),
    ("class 22 on the server", {"backwards": True}, "storage_refused", "DataError: range lower bound"),
    ("a str for a smallint parameter", {"percent": "ten"}, "storage_refused", "DataError: invalid input for query"),
    ("a smallint parameter out of range", {"percent": 70_000}, "storage_refused", "DataError: invalid input for query"),
    ("a str for a smallint in COPY", {"percent": "ten", "via": "copy"}, "storage_refused", "TypeError"),
    ("a smallint out of range in COPY", {"percent": 70_000, "via": "copy"}, "storage_refused", "OverflowError"),
    ("the client-side DataError", {"ref": "client-side"}, "storage_refused", "DataError: invalid input for query"),
    ("a TypeError of the handler's own", {"day": None}, "handler_failed", "TypeError"),
]


async def test_what_storage_refuses_of_a_record_is_dead_lettered_once_as_storage_refused_and_the_stream_goes_on(
        pool, producer, kafka_bootstrap, unique_topics):
    """A row that breaks an integrity constraint (class 23), a value the server cannot hold (class 22), a value of the
    wrong Python type or range that asyncpg cannot encode, as a query parameter or in a COPY row, and the client-side
    DataError asyncpg reserves for bad query input are the store refusing that record's data: each is dead-lettered
    on the real broker as `storage_refused` with the error, tried once and not retried, and the events after it
    apply. A TypeError raised by the handler's own code is no refusal: `handler_failed`."""
    settings = unique_topics.model_copy(update={"kafka_bootstrap": kafka_bootstrap})
    await ensure_topics(settings, [settings.topic_dept_events + settings.dead_letter_suffix])
    await pool.execute("CREATE TABLE periods (ref text UNIQUE, task_id text REFERENCES tasks (id),"
                       " percent smallint NOT NULL CHECK (percent <= 100), during tstzrange NOT NULL,"
                       " EXCLUDE USING gist (during WITH &&))")
    calls: collections.Counter[int] = collections.Counter()

    async def handler(conn, event) -> None:
        calls[event.delivery.offset] += 1
        data = event.ce["data"]
        if data["ref"] == "client-side":
            raise asyncpg.exceptions._base.DataError("invalid input for query argument $3: 'ten'")
        start = datetime(2021, 8, 1, tzinfo=timezone.utc) + timedelta(days=data["day"])  # TypeError for no day
        during = asyncpg.Range(start, start + timedelta(hours=-1 if data["backwards"] else 1))
        row = (data["ref"], data["task"], data["percent"], during)
        if data["via"] == "copy":
            await conn.copy_records_to_table("periods", records=[row], columns=["ref", "task_id", "percent", "during"])
        else:
            await conn.execute("INSERT INTO periods (ref, task_id, percent, during) VALUES ($1, $2, $3, $4)", *row)

    def period(offset: int, ref: str, day: int | None, *, task: str = "T07", percent: int | str | None = 10,
               via: str = "execute", backwards: bool = False) -> Delivery:
        """A progress report's record whose data is the handler's row instead."""
        record = raw_delivery(progress("T07", "market-regulation", "2021-08-20 10:00", "in_progress", 10), offset)
        data = {"ref": ref, "task": task, "day": day, "percent": percent, "via": via, "backwards": backwards}
        return record._replace(topic=settings.topic_dept_events, value=json.dumps(data).encode())

    deliveries = [period(0, "first", 1),
                  *(period(n, **{"ref": f"faulty {n}", "day": 10 + n, **breaks})
                    for n, (_, breaks, _, _) in enumerate(REFUSALS, start=1)),
                  period(len(REFUSALS) + 1, "last", 2, via="copy")]
    consumer = LedgerConsumer(name="tracker", pool=pool, producer=producer, handler=handler,
                              validate=lambda ce: ce, retry_budget_s=5)

    result = await consumer.apply(deliveries)

    assert result.applied == 2 and calls == dict.fromkeys(range(len(deliveries)), 1)
    assert [r["ref"] for r in await pool.fetch("SELECT ref FROM periods ORDER BY ref")] == ["first", "last"]
    reader, letters = await read_dead_letters(settings, settings.topic_dept_events)
    await reader.stop()
    got = {int(letter.header("dlq_origin_offset")): (letter.header("dlq_reason"), letter.header("dlq_error"))
           for letter in letters}
    assert sorted(got) == list(range(1, len(REFUSALS) + 1))
    for offset, (kind, _, reason, error) in enumerate(REFUSALS, start=1):
        assert got[offset][0] == reason and got[offset][1].startswith(error), (kind, got[offset])
