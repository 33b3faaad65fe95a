"""A record's fault dead-letters that record and the notifier's batch goes on; what the rolled-back
attempt of a batch did in the process (counters, log lines) is not done: each applied event counts once.

The events reach the handler through duban.consumer.LedgerConsumer on the real broker, with the
contract check switched off where a record must reach the handler as a contract that let it through
would have let it: what storage refuses must still fall out alone."""

from __future__ import annotations

import json

import pytest
from prometheus_client import REGISTRY

from duban.broker import ensure_topics, make_producer
from duban.consumer import Delivery, LedgerConsumer
from duban.events.kafka import to_kafka
from duban.events.models import CompletionReturned
from entrypoints.topics import read_dead_letters
from services.notifier.handlers import NotifierHandler
from tests.notifier.conftest import CATALOG, at, escalation, light_changed, task_updated, tracker_event

pytestmark = pytest.mark.database


@pytest.fixture
async def settings(unique_topics, kafka_bootstrap):
    settings = unique_topics.model_copy(update={"kafka_bootstrap": kafka_bootstrap})
    await ensure_topics(settings, [settings.topic_tracker_changes + settings.dead_letter_suffix])
    return settings


@pytest.fixture
async def producer(settings):
    producer = make_producer(settings)
    await producer.start()
    yield producer
    await producer.stop()


def light_changes(light: str) -> float:
    return REGISTRY.get_sample_value("duban_notifier_light_changes_total", {"light": light}) or 0


def record(settings, ce: dict, offset: int, *, data: dict | None = None) -> Delivery:
    """The record of `ce` on the tracker's topic; with `data`, carrying that instead, as a producer that
    skips the contract check would write it."""
    key, value, headers = to_kafka(ce)
    if data is not None:
        value = json.dumps(data).encode()
    return Delivery(settings.topic_tracker_changes, 0, offset, key, value, tuple(headers))


def returned(task: str, when, reason: str) -> dict:
    return tracker_event(CompletionReturned.TYPE, task, {
        "request_source": "/departments/tax-bureau", "request_id": "done-1", "requested_at": when.isoformat(),
        "grace_until": "2021-10-15", "as_of": when.isoformat(), "decided_by": "督查室 李四", "reason": reason}, when)


async def dead_letters(settings) -> dict[int, tuple[str, str]]:
    reader, letters = await read_dead_letters(settings, settings.topic_tracker_changes)
    await reader.stop()
    return {int(letter.header("dlq_origin_offset")): (letter.header("dlq_reason"), letter.header("dlq_error"))
            for letter in letters}


async def test_a_fault_while_applying_rolls_the_batch_back_and_each_applied_light_change_counts_once(
        pool, producer, settings):
    consumer = LedgerConsumer(name="notifier", pool=pool, producer=producer, handler=NotifierHandler(CATALOG),
                              validate=lambda ce: ce, retry_budget_s=5)
    clean = returned("T09", at("2021-09-30 11:00"), "材料不全")
    events = [light_changed("T09", "red", at("2021-09-30 09:00")),
              task_updated("T09", "in_progress", 40, "yellow", at("2021-09-30 10:00")),
              clean,  # its reason carries a NUL, which PostgreSQL cannot store: it fails inside the batch
              task_updated("T09", "in_progress", 50, "red", at("2021-09-30 12:00")),
              task_updated("T07", "in_progress", 10, "yellow", at("2021-09-30 12:00"))]
    deliveries = [record(settings, ce, offset) for offset, ce in enumerate(events)]
    deliveries[2] = record(settings, clean, 2, data={**clean["data"], "reason": "材料\u0000不全"})
    yellow, red = light_changes("yellow"), light_changes("red")

    result = await consumer.apply(deliveries)

    assert result.applied == 4 and [(d.offset, e.reason) for d, e in result.dead] == [(2, "storage_refused")]
    assert (light_changes("yellow") - yellow, light_changes("red") - red) == (2, 1)
    [(reason, error)] = (await dead_letters(settings)).values()
    assert reason == "storage_refused" and error.startswith("UntranslatableCharacterError")
    assert {r["task_id"]: r["light"] for r in await pool.fetch("SELECT task_id, light FROM task_lights")} == {
        "T09": "red", "T07": "yellow"}
    assert (await escalation(pool, "T07"))["level"] == 1


async def test_what_can_never_apply_is_refused_before_the_batch_applies(pool, producer, settings):
    consumer = LedgerConsumer(name="notifier", pool=pool, producer=producer, handler=NotifierHandler(CATALOG),
                              validate=lambda ce: ce, retry_budget_s=5)
    unknown_task = task_updated("T07", "in_progress", 10, "yellow", at("2021-09-30 10:00"))
    events = [task_updated("T09", "in_progress", 40, "yellow", at("2021-09-30 09:00")),
              unknown_task,
              tracker_event("duban.tracker.milestone.status-changed.v1", "T09",
                            {"milestone_id": "T07-M1", "from": "open", "to": "overdue",
                             "as_of": at("2021-09-30 10:00").isoformat()}, at("2021-09-30 10:00")),
              light_changed("T10", "red", at("2021-09-30 11:00")),
              task_updated("T09", "in_progress", 50, "red", at("2021-09-30 12:00"))]
    deliveries = [record(settings, ce, offset) for offset, ce in enumerate(events)]
    # A task the plan does not have, a day no calendar has: today's contract refuses both too, the
    # handler does not rely on it.
    deliveries[1] = deliveries[1]._replace(key=b"T99", headers=tuple(
        (name, b"T99" if name == "ce_subject" else value) for name, value in deliveries[1].headers))
    deliveries[3] = record(settings, events[3], 3, data={**events[3]["data"], "as_of": "2021-09-31T11:00:00+08:00"})
    yellow, red = light_changes("yellow"), light_changes("red")

    result = await consumer.apply(deliveries)

    assert result.applied == 2
    assert [(d.offset, e.reason) for d, e in result.dead] == [
        (1, "unknown_task"), (2, "unknown_milestone"), (3, "unreadable_time")]
    assert (light_changes("yellow") - yellow, light_changes("red") - red) == (1, 1)
    letters = await dead_letters(settings)
    assert letters[1][0] == "unknown_task" and "T99" in letters[1][1]
    assert letters[2] == ("unknown_milestone", "T09 has no milestone 'T07-M1' in the plan")
    assert letters[3] == ("unreadable_time", "'2021-09-31T11:00:00+08:00': day is out of range for month")
    assert await pool.fetchval("SELECT count(*) FROM escalations") == 1  # T09's: the milestone and T10 opened none
    assert await pool.fetchval("SELECT light FROM task_lights WHERE task_id = 'T09'") == "red"
