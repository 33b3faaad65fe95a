"""A department that produces to duban.dept-events directly (docs/intake.md, "Producing directly")
must put each key on the partition intake puts it on, or one aggregate's events split across
partitions and lose their order. aiokafka's default partitioner is the Java client's murmur2;
librdkafka (confluent-kafka and most non-Java clients) must be told `partitioner=murmur2_random`."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer

from duban.broker import ensure_topics
from duban.events.kafka import to_kafka
from services.intake.app import intake_producer
from services.intake.settings import IntakeSettings
from tests.tracker.conftest import CATALOG, at, case_event, progress

PARTITIONS = 12


def events() -> list[dict]:
    """Keys as intake makes them: every task id of the plan and a range of case ids."""
    tasks = [progress(task.id, task.lead[0], at("2021-09-01 09:00"), "in_progress", 50) for task in CATALOG.tasks]
    cases = [case_event("opened", f"GL-2021-{n:06d}", at("2021-09-01 09:00"), {}) for n in range(300)]
    cases += [case_event("opened", str(uuid.uuid4()), at("2021-09-01 09:00"), {}) for _ in range(100)]
    return tasks + cases


async def intake_partitions(settings: IntakeSettings, topic: str, records: list) -> dict[bytes, int]:
    producer = intake_producer(settings)
    await producer.start()
    try:
        return {key: (await producer.send_and_wait(topic, value, key=key, headers=headers)).partition
                for key, value, headers in records}
    finally:
        await producer.stop()


def librdkafka_partitions(bootstrap: str, topic: str, records: list, **config) -> dict[bytes, int]:
    """Each key's partition as the broker acknowledged it to a confluent-kafka producer."""
    acknowledged: dict[bytes, int] = {}

    def on_delivery(error, message) -> None:
        assert error is None, error
        acknowledged[message.key()] = message.partition()

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", **config})
    for key, value, headers in records:
        producer.produce(topic, value, key=key, headers=headers, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0, "confluent-kafka did not deliver every record"
    return acknowledged


@pytest.mark.timeout(120)
async def test_a_librdkafka_producer_with_murmur2_random_matches_intake(kafka_bootstrap):
    topic = f"duban.dept-events.{uuid.uuid4().hex[:8]}"
    settings = IntakeSettings(kafka_bootstrap=kafka_bootstrap, topic_partitions=PARTITIONS)
    await ensure_topics(settings, [topic])
    records = [to_kafka(event) for event in events()]

    by_intake = await intake_partitions(settings, topic, records)
    by_librdkafka = librdkafka_partitions(kafka_bootstrap, topic, records, partitioner="murmur2_random")

    assert len(by_intake) == len(records)
    assert by_librdkafka == by_intake
    assert len(set(by_intake.values())) == PARTITIONS  # the keys spread over every partition

    # librdkafka's own default (CRC32) puts keys elsewhere: the setting is what makes them agree.
    by_default = librdkafka_partitions(kafka_bootstrap, topic, records)
    assert sum(by_default[key] != by_intake[key] for key in by_intake) > len(records) // 2
