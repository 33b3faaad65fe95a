"""`duban topics …`: create Duban's topics, show them, and inspect or re-drive dead letters.

Topics are never auto-created (Tansu cannot, and in production the partition count is a decision),
so every deployment runs `duban topics create` before the services start: the docker-compose init
job and the Kubernetes init containers do. The settings come from the environment like a
service's: DUBAN_KAFKA_BOOTSTRAP, DUBAN_TOPIC_PARTITIONS, DUBAN_TOPIC_REPLICATION, DUBAN_TOPIC_*."""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from duban.broker import all_topics, ensure_topics, kafka_client_options, make_producer, wait_for_broker
from duban.settings import ServiceSettings

DLQ_HEADER_PREFIX = "dlq_"


def register(subcommands: argparse._SubParsersAction) -> None:
    topics = subcommands.add_parser("topics", help="Kafka topics: create them, list them, handle dead letters")
    actions = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="create the missing Duban topics and their .dlq topics")
    create.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                        help="how long to wait for the broker to answer (default 60)")
    create.set_defaults(handler=lambda a: asyncio.run(create_topics(ServiceSettings(), a.wait)))

    show = actions.add_parser("list", help="show the Duban topics with their partitions and end offsets")
    show.set_defaults(handler=lambda a: asyncio.run(list_topics(ServiceSettings())))

    dead = actions.add_parser("dead-letters", help="show the dead letters of TOPIC, or re-drive them to their origin")
    dead.add_argument("topic", help="the main topic (e.g. duban.dept-events); its dead letters are TOPIC.dlq")
    dead.add_argument("--redrive", action="store_true",
                      help="publish each dead letter not re-driven yet back to its origin topic, without its dlq_* "
                           "headers; progress is kept in the consumer group duban-redrive.TOPIC")
    dead.add_argument("--limit", type=int, default=None, metavar="N", help="at most N dead letters")
    dead.set_defaults(handler=lambda a: asyncio.run(dead_letters(ServiceSettings(), a.topic, a.redrive, a.limit)))


async def create_topics(settings: ServiceSettings, wait_s: float = 60.0) -> int:
    await wait_for_broker(settings, timeout_s=wait_s)
    wanted = all_topics(settings)
    before = await _existing(settings)
    await ensure_topics(settings, wanted)
    after = await _existing(settings)
    missing = [t for t in wanted if t not in after]
    for topic in wanted:
        state = "exists" if topic in before else ("created" if topic in after else "MISSING")
        print(f"{topic:<32} {state}")
    if missing:
        print(f"topics still missing after creation: {', '.join(missing)}", file=sys.stderr)
        return 1
    print(f"partitions {settings.topic_partitions} (for new topics), replication {settings.topic_replication}, "
          f"broker {settings.kafka_bootstrap}")
    return 0


async def _existing(settings: ServiceSettings) -> set[str]:
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def list_topics(settings: ServiceSettings) -> int:
    reader = AIOKafkaConsumer(**kafka_client_options(settings), enable_auto_commit=False)
    await reader.start()
    try:
        known = await reader.topics()
        status = 0
        print(f"{'topic':<32} {'partitions':>10} {'events':>12}")
        for topic in all_topics(settings):
            if topic not in known:
                print(f"{topic:<32} {'missing':>10}")
                status = 1
                continue
            partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
            ends, starts = await reader.end_offsets(partitions), await reader.beginning_offsets(partitions)
            print(f"{topic:<32} {len(partitions):>10} {sum(ends[tp] - starts[tp] for tp in partitions):>12}")
        return status
    finally:
        await reader.stop()


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str:
        return next((v.decode(errors="replace") for k, v in self.headers if k == name), "")

    @property
    def origin_topic(self) -> str:
        return self.header("dlq_origin_topic")

    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers if not k.startswith(DLQ_HEADER_PREFIX)]


async def read_dead_letters(settings: ServiceSettings, topic: str, *, group: str | None = None,
                            limit: int | None = None) -> tuple[AIOKafkaConsumer, list[DeadLetter]]:
    """The dead letters of `topic` up to the current end: all of them, or (with `group`) those after the
    group's committed position. Returns the started consumer too; the caller commits and stops it."""
    dlq = topic + settings.dead_letter_suffix
    consumer = AIOKafkaConsumer(**kafka_client_options(settings), group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    partitions = [TopicPartition(dlq, p) for p in sorted(consumer.partitions_for_topic(dlq) or ())]
    if not partitions:
        await consumer.stop()
        raise SystemExit(f"no topic {dlq} on {settings.kafka_bootstrap}")
    consumer.assign(partitions)
    if group is None:
        await consumer.seek_to_beginning(*partitions)
    else:
        committed = {tp: await consumer.committed(tp) for tp in partitions}
        starts = await consumer.beginning_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, committed[tp] if committed[tp] is not None else starts[tp])
    ends = await consumer.end_offsets(partitions)
    letters: list[DeadLetter] = []
    for tp in partitions:
        while await consumer.position(tp) < ends[tp] and (limit is None or len(letters) < limit):
            batch = await consumer.getmany(tp, timeout_ms=2000, max_records=min(500, limit or 500))
            records = batch.get(tp, [])
            if not records:
                break
            for record in records:
                if record.offset >= ends[tp] or (limit is not None and len(letters) >= limit):
                    break
                letters.append(DeadLetter(tp.partition, record.offset, record.key, record.value,
                                          tuple(record.headers or ())))
    return consumer, letters


async def dead_letters(settings: ServiceSettings, topic: str, redrive: bool, limit: int | None) -> int:
    group = f"duban-redrive.{topic}" if redrive else None
    consumer, letters = await read_dead_letters(settings, topic, group=group, limit=limit)
    try:
        for letter in letters:
            print(f"{topic}{settings.dead_letter_suffix}[{letter.partition}]@{letter.offset}"
                  f"  reason={letter.header('dlq_reason')} consumer={letter.header('dlq_consumer')}"
                  f"  origin={letter.origin_topic}[{letter.header('dlq_origin_partition')}]"
                  f"@{letter.header('dlq_origin_offset')}  type={letter.header('ce_type')} id={letter.header('ce_id')}"
                  f"\n    {letter.header('dlq_error')[:300]}")
        if not redrive:
            print(f"{len(letters)} dead letter(s)")
            return 0
        producer = make_producer(settings)
        await producer.start()
        try:
            for letter in letters:
                # Back to where it came from, as it was: every consumer of the topic sees it again and
                # the ones that applied it already skip it by its (source, id) in their ledger.
                await producer.send_and_wait(letter.origin_topic or topic, letter.value, key=letter.key,
                                             headers=letter.original_headers())
                await consumer.commit({TopicPartition(topic + settings.dead_letter_suffix, letter.partition):
                                       letter.offset + 1})
        finally:
            await producer.stop()
        print(f"{len(letters)} dead letter(s) re-driven")
        return 0
    finally:
        await consumer.stop()
