"""`duban topics`: what the init step of every deployment runs, and the dead-letter tools of the
operations runbook, against the session's real broker."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition

from duban.broker import all_topics, make_producer, send_dead_letter
from entrypoints.topics import create_topics, dead_letters, list_topics, read_dead_letters


async def test_create_is_idempotent_and_makes_the_dead_letter_topics(kafka_bootstrap, unique_topics, capsys):
    settings = unique_topics.model_copy(update={"kafka_bootstrap": kafka_bootstrap})
    assert await create_topics(settings, wait_s=10) == 0
    first = capsys.readouterr().out
    assert all(f"{topic}" in first for topic in all_topics(settings))
    assert first.count(" created") == 4
    assert await create_topics(settings, wait_s=10) == 0
    assert capsys.readouterr().out.count(" exists") == 4
    assert await list_topics(settings) == 0
    listing = capsys.readouterr().out
    for topic in all_topics(settings):
        assert any(line.split()[:2] == [topic, str(settings.topic_partitions)] for line in listing.splitlines())


async def test_dead_letters_are_shown_and_redriven_once_without_their_dlq_headers(kafka_bootstrap, unique_topics, capsys):
    settings = unique_topics.model_copy(update={"kafka_bootstrap": kafka_bootstrap})
    await create_topics(settings, wait_s=10)
    topic = settings.topic_dept_events
    producer = make_producer(settings)
    await producer.start()
    ids = [str(uuid.uuid4()) for _ in range(3)]
    try:
        for n, event_id in enumerate(ids):
            await send_dead_letter(
                producer, consumer="tracker", topic=topic, partition=0, offset=10 + n, key=b"T07",
                value=b'{"status": "done"}', headers=[("ce_id", event_id.encode()), ("ce_type", b"duban.task.x.v1")],
                reason="invalid", error="data/percent: 120 is greater than 100")
    finally:
        await producer.stop()

    assert await dead_letters(settings, topic, redrive=False, limit=None) == 0
    shown = capsys.readouterr().out
    assert "3 dead letter(s)" in shown and all(f"id={event_id}" in shown for event_id in ids)
    assert "reason=invalid consumer=tracker" in shown and "120 is greater than 100" in shown

    assert await dead_letters(settings, topic, redrive=True, limit=2) == 0
    assert "2 dead letter(s) re-driven" in capsys.readouterr().out
    assert await dead_letters(settings, topic, redrive=True, limit=None) == 0
    assert "1 dead letter(s) re-driven" in capsys.readouterr().out
    assert await dead_letters(settings, topic, redrive=True, limit=None) == 0
    assert "0 dead letter(s) re-driven" in capsys.readouterr().out
    # Showing does not consume: all three are still there to inspect.
    consumer, letters = await read_dead_letters(settings, topic)
    await consumer.stop()
    assert len(letters) == 3

    reader = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await reader.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        if not partitions:
            await reader.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic))]
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        ends = await reader.end_offsets(partitions)
        redriven = []
        while sum(ends.values()) and len(redriven) < sum(ends[tp] for tp in partitions):
            batch = await reader.getmany(timeout_ms=2000)
            if not batch:
                break
            redriven += [record for records in batch.values() for record in records]
    finally:
        await reader.stop()
    assert sorted(dict(r.headers)["ce_id"].decode() for r in redriven) == sorted(ids)
    for record in redriven:
        assert record.key == b"T07" and record.value == b'{"status": "done"}'
        assert not any(name.startswith("dlq_") for name, _ in record.headers)
