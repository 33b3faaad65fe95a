"""Kafka plumbing shared by the services: topic creation, client options, producers and dead letters.

Topics are always created explicitly: Tansu (the local broker) does not auto-create them, and in
production the partition count is a decision, not an accident of the first producer."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterable

import faust
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from aiokafka import AIOKafkaClient, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from prometheus_client import Counter

from duban.settings import ServiceSettings

DEAD_LETTERS = Counter(
    "duban_dead_letters_total", "Events moved to a dead-letter topic because they can never be applied",
    ["consumer", "topic", "reason"],
)


def broker_credentials(settings: ServiceSettings) -> faust.types.auth.CredentialsT | None:
    """The faust credentials for DUBAN_KAFKA_SECURITY_PROTOCOL (None: PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    context = (ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH, cafile=settings.kafka_ssl_cafile or None)
               if protocol in ("SSL", "SASL_SSL") else None)
    if protocol.startswith("SASL_"):
        return faust.SASLCredentials(username=settings.kafka_sasl_username,
                                     password=settings.kafka_sasl_password.get_secret_value(),
                                     mechanism=settings.kafka_sasl_mechanism, ssl_context=context)
    return faust.SSLCredentials(context) if context else None


def kafka_client_options(settings: ServiceSettings) -> dict:
    """bootstrap_servers plus the security options for any aiokafka producer, consumer or admin client,
    translated by faust-streaming's credential mapping."""
    return {"bootstrap_servers": settings.kafka_bootstrap, **credentials_to_aiokafka_auth(broker_credentials(settings))}


def all_topics(settings: ServiceSettings) -> list[str]:
    main = [settings.topic_dept_events, settings.topic_tracker_changes]
    return main + [t + settings.dead_letter_suffix for t in main]


async def ensure_topics(settings: ServiceSettings, names: Iterable[str] | None = None) -> None:
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in (names or all_topics(settings)) if n not in existing]
        if missing:
            try:
                await admin.create_topics([
                    NewTopic(n, settings.topic_partitions, settings.topic_replication) for n in missing])
            except TopicAlreadyExistsError:
                pass  # a concurrent start created them first
    finally:
        await admin.close()


def make_producer(settings: ServiceSettings, **overrides) -> AIOKafkaProducer:
    options = {
        **kafka_client_options(settings),
        "acks": "all",
        "enable_idempotence": settings.kafka_enable_idempotence,
        "linger_ms": 2,
        "request_timeout_ms": 10_000,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


async def wait_for_broker(settings: ServiceSettings, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(**kafka_client_options(settings), request_timeout_ms=2000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.3)
        finally:
            await admin.close()


class BrokerProbe:
    """Readiness against the broker: a metadata request over an existing client (a producer's), which
    fails while the broker cannot be reached or a topic the service needs has no leader. Its answer
    is kept for `ttl_s`, so frequent probes and scrapes cost one request per interval."""

    def __init__(self, client: AIOKafkaClient, topics: Iterable[str], *, timeout_s: float = 1.5,
                 ttl_s: float = 1.5) -> None:
        self.client, self.topics, self.timeout_s, self.ttl_s = client, tuple(topics), timeout_s, ttl_s
        self._asked_at = -float("inf")
        self._failure: Exception | None = None
        self._lock = asyncio.Lock()

    async def check(self) -> None:
        async with self._lock:
            if time.monotonic() - self._asked_at >= self.ttl_s:
                self._failure = await self._ask()
                self._asked_at = time.monotonic()
        if self._failure is not None:
            raise self._failure

    async def _ask(self) -> Exception | None:
        try:
            cluster = await asyncio.wait_for(self.client.fetch_all_metadata(), self.timeout_s)
        except asyncio.TimeoutError:
            return TimeoutError(f"the broker did not answer a metadata request within {self.timeout_s:g}s")
        except Exception as error:  # noqa: BLE001 - whatever it is, the broker is not usable
            return error
        leaderless = [topic for topic in self.topics
                      if not cluster.partitions_for_topic(topic)
                      or cluster.available_partitions_for_topic(topic) != cluster.partitions_for_topic(topic)]
        if leaderless:
            return RuntimeError(f"topics missing or without a leader: {', '.join(leaderless)}")
        return None


async def send_dead_letter(
    producer: AIOKafkaProducer, *, consumer: str, topic: str, partition: int, offset: int,
    key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes]], reason: str, error: str,
    suffix: str = ".dlq",
) -> None:
    """Publish an event that can never be applied, with why and where it came from, then count it."""
    dlq_headers = [h for h in headers if not h[0].startswith("dlq_")] + [
        ("dlq_reason", reason.encode()),  # the error may quote the data: a lone surrogate is escaped, not fatal
        ("dlq_error", error[:2000].encode("utf-8", "backslashreplace")),
        ("dlq_origin_topic", topic.encode()),
        ("dlq_origin_partition", str(partition).encode()),
        ("dlq_origin_offset", str(offset).encode()),
        ("dlq_consumer", consumer.encode()),
    ]
    await producer.send_and_wait(topic + suffix, value, key=key, headers=dlq_headers)
    DEAD_LETTERS.labels(consumer=consumer, topic=topic, reason=reason).inc()
