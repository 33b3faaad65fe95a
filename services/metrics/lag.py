"""The lag of every stream processor's consumer group, polled from the broker."""

from __future__ import annotations

import asyncio

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from duban.broker import kafka_client_options
from services.metrics.settings import MetricsSettings

log = structlog.get_logger(__name__)


class ConsumerLag(Collector):
    """`duban_consumer_lag{group,topic,partition}`: log-end offset minus the group's committed offset,
    polled from the broker, so one service reports every group and a stopped consumer still shows."""

    def __init__(self, settings: MetricsSettings) -> None:
        self.settings = settings
        self.lags: dict[tuple[str, str, int], int] = {}

    async def poll(self, admin: AIOKafkaAdminClient, reader: AIOKafkaConsumer) -> dict[tuple[str, str, int], int]:
        lags = {}
        topics = await reader.topics()
        for group, topic in self.settings.watched_groups().items():
            if topic not in topics:
                continue
            partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
            committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
            ends = await reader.end_offsets(partitions)
            starts = await reader.beginning_offsets(partitions)
            for tp in partitions:
                offset = committed.get(tp)
                # No commit yet: the group starts from the earliest offset (consumer_auto_offset_reset).
                position = offset.offset if offset is not None and offset.offset >= 0 else starts[tp]
                lags[(group, topic, tp.partition)] = max(0, ends[tp] - position)
        return lags

    async def run(self, _pool: asyncpg.Pool) -> None:
        admin = AIOKafkaAdminClient(**kafka_client_options(self.settings))
        reader = AIOKafkaConsumer(**kafka_client_options(self.settings), enable_auto_commit=False)
        await admin.start()
        await reader.start()
        try:
            while True:
                try:
                    self.lags = await self.poll(admin, reader)
                except Exception as exc:  # a broker hiccup: keep the last figures, try again next round
                    log.warning("consumer lag poll failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(self.settings.lag_poll_interval_s)
        finally:
            await reader.stop()
            await admin.close()

    def collect(self):
        family = GaugeMetricFamily("duban_consumer_lag", "Events on the topic the group has not committed yet",
                                   labels=["group", "topic", "partition"])
        for (group, topic, partition), lag in sorted(self.lags.items()):
            family.add_metric([group, topic, str(partition)], lag)
        yield family
