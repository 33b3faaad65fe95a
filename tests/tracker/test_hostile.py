"""Hostile events straight to Kafka, among good ones, against a real tracker process: it never exits,
every record is applied or dead-lettered, and every good one is applied.

The hostile ones are what a department system writing to the topic directly could produce: NUL and
unpaired surrogates (as JSON escapes), bidi controls, 10,000-character strings, numbers past any
column, dates in year 0001, 1900 or 9999 — some within the contract, most not."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duban.broker import make_producer
from tests.processes import ServiceProcess
from tests.tracker.conftest import CATALOG
from tests.tracker.runtime import create_topics, tracker_env, wait_for
from tests.tracker.test_runtime import ready

pytestmark = [pytest.mark.database, pytest.mark.timeout(240)]

GOOD_FROM = datetime(2021, 8, 2, 1, 0, tzinfo=timezone.utc)
LEADS = [(task.id, task.lead[0]) for task in CATALOG.tasks]

_texts = st.one_of(
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfffy", "\ud83d", "\u202e\u2066evil\u2069\u202c", "\ufeff",
                     "\u200f\u200e", "😀" * 500, "x" * 10_000, "说" * 2000, "说" * 2001, " ", "\n\t", "\\u0000"]),
    st.text(st.characters(exclude_categories=()), min_size=1, max_size=40),  # surrogates and controls included
)
_times = st.sampled_from([
    "9999-12-31T23:59:59+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00",
    "1900-01-01T08:00:00+08:00", "1999-12-31T23:59:59Z", "2099-01-01T00:00:00Z", "2021-02-29T10:00:00+08:00",
    "2021-08-01T10:00:00.999999+08:00", "2021-08-01T10:00:00-00:00",
])
_numbers = st.sampled_from([0, 100, -1, 101, 2**31, 2**63, 10**30, 1e308, -0.0, 50.5, True, None, "50"])


@st.composite
def hostile_events(draw: st.DrawFn) -> dict:
    task_id, lead = draw(st.sampled_from(LEADS))
    kind = draw(st.sampled_from(["progress", "progress", "milestone", "case"]))
    event = {"specversion": "1.0", "id": f"h-{uuid.uuid4()}", "source": f"/departments/{lead}",
             "time": "2021-08-05T10:00:00+08:00"}
    if kind == "progress":
        event |= {"type": "duban.task.progress-reported.v1", "subject": task_id,
                  "data": {"status": "in_progress", "percent": 40, "note": "正常"}}
    elif kind == "milestone":
        event |= {"type": "duban.task.milestone-completed.v1", "subject": task_id,
                  "data": {"milestone_id": f"{task_id}-M1", "note": "正常"}}
    else:
        event |= {"source": "/departments/tax-bureau", "type": "duban.case.opened.v1",
                  "subject": draw(st.sampled_from(["C-1", "a" * 128, "A.b:c_d-e"])),
                  "data": {"case_type": "export_tax_refund", "reference": "（2021）闽0102破7号", "title": "标题"}}
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["text", "text", "time", "number", "url"]))
        if what == "text":
            name = next(n for n in ("note", "title", "reference") if n in event["data"])
            event["data"][draw(st.sampled_from([name, "note" if kind != "case" else "title"]))] = draw(_texts)
        elif what == "time":
            event["time"] = draw(_times)
        elif what == "number" and kind == "progress":
            event["data"]["percent"] = draw(_numbers)
        elif what == "url" and kind != "case":
            event["data"]["evidence_url"] = "https://files.gulou.example/" + "a" * draw(st.sampled_from([10, 2100]))
    return event


def record(event: dict) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Binary mode as a producer that skips the contract check writes it: data as JSON (NUL and
    surrogates become \\u escapes), attributes in ce_* headers."""
    headers = [(f"ce_{name}", event[name].encode()) for name in ("specversion", "id", "source", "type", "subject",
                                                                  "time")]
    return event["subject"].encode(), json.dumps(event["data"]).encode(), [*headers, ("content-type", b"application/json")]


@dataclass
class Pipeline:
    tracker: ServiceProcess
    producer: AIOKafkaProducer
    dead_letters: AIOKafkaConsumer
    pool: object
    topic: str
    dead_letters_by_id: dict[str, dict[str, bytes]] = field(default_factory=dict)
    good_at: itertools.count = field(default_factory=itertools.count)

    def good(self) -> dict:
        n = next(self.good_at)
        task_id, lead = LEADS[n % len(LEADS)]
        return {"specversion": "1.0", "id": f"g-{uuid.uuid4()}", "source": f"/departments/{lead}",
                "type": "duban.task.progress-reported.v1", "subject": task_id,
                "time": (GOOD_FROM + timedelta(minutes=n)).isoformat(),
                "data": {"status": "in_progress", "percent": n % 100}}

    async def settled(self, good: set[str], hostile: set[str]) -> bool:
        assert self.tracker.process.poll() is None, f"the tracker exited\n{self.tracker.log()[-4000:]}"
        for records in (await self.dead_letters.getmany(timeout_ms=100)).values():
            self.dead_letters_by_id |= {dict(r.headers)["ce_id"].decode(): dict(r.headers) for r in records}
        dead = self.dead_letters_by_id.keys()
        applied = {r["id"] for r in await self.pool.fetch("SELECT id FROM processed_events WHERE id = ANY($1::text[])",
                                                          list(good | hostile))}
        assert not good & dead, "a good event was dead-lettered"
        return good <= applied and hostile <= applied | dead


@pytest.fixture
async def pipeline(unique_topics, kafka_bootstrap, database_url, schema, pool, tmp_path):
    topics = unique_topics.model_copy(update={"kafka_bootstrap": kafka_bootstrap})
    await create_topics(topics)
    env = tracker_env(topics, database_url=database_url, schema=schema, group=f"tracker-{schema}", data_dir=tmp_path)
    tracker = ServiceProcess(env, tmp_path / "tracker.log").start()
    producer = make_producer(topics)
    dead_letters = AIOKafkaConsumer(topics.topic_dept_events + topics.dead_letter_suffix, bootstrap_servers=kafka_bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    await producer.start()
    await dead_letters.start()
    try:
        await wait_for(lambda: ready(tracker), 90, "the tracker to own its partitions", tracker)
        running = Pipeline(tracker, producer, dead_letters, pool, topics.topic_dept_events)
        yield running
        assert running.dead_letters_by_id, "no hostile event was dead-lettered: the strategies lost their teeth"
        assert tracker.process.poll() is None and tracker.stop(), tracker.log()[-4000:]
    finally:
        await dead_letters.stop()
        await producer.stop()
        if tracker.process.poll() is None:
            tracker.kill()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(hostile=st.lists(hostile_events(), min_size=1, max_size=4), good_first=st.booleans())
async def test_hostile_events_are_applied_or_dead_lettered_and_the_good_ones_applied(pipeline, hostile, good_first):
    before, after = pipeline.good(), pipeline.good()
    batch = [before, *hostile, after] if good_first else [*hostile, before, after]
    for event in batch:
        key, value, headers = record(event)
        await pipeline.producer.send(pipeline.topic, value, key=key, headers=headers)
    await pipeline.producer.flush()
    good, bad = {before["id"], after["id"]}, {e["id"] for e in hostile}
    await wait_for(lambda: pipeline.settled(good, bad), 30, "every record applied or dead-lettered", pipeline.tracker)


async def test_the_events_that_once_stopped_the_tracker_are_dead_lettered_with_their_reason(pipeline, pool):
    nul, surrogate, doomsday, year_one, year_1900 = (pipeline.good() for _ in range(5))
    nul["data"]["note"] = "试运行\u0000中"
    surrogate["data"]["note"] = "\ud800"
    doomsday["time"], year_one["time"], year_1900["time"] = (
        "9999-12-31T00:00:00+08:00", "0001-01-01T00:00:00Z", "1900-01-01T08:00:00+08:00")
    hostile = [nul, surrogate, doomsday, year_one, year_1900]
    good = pipeline.good() | {"subject": doomsday["subject"], "source": doomsday["source"]}
    for event in [*hostile, good]:
        key, value, headers = record(event)
        await pipeline.producer.send(pipeline.topic, value, key=key, headers=headers)
    await pipeline.producer.flush()
    await wait_for(lambda: pipeline.settled({good["id"]}, {e["id"] for e in hostile}), 30, "the dead letters",
                   pipeline.tracker)
    reasons = [pipeline.dead_letters_by_id[e["id"]]["dlq_reason"].decode() for e in hostile]
    assert reasons == ["invalid", "invalid", "time_out_of_range", "time_out_of_range", "time_out_of_range"]
    assert b"/data/note" in pipeline.dead_letters_by_id[nul["id"]]["dlq_error"]
    assert await pool.fetchval("SELECT last_event_id FROM tasks WHERE id = $1", good["subject"]) == good["id"]
