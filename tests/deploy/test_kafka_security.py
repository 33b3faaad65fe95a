"""The Kafka security settings (DUBAN_KAFKA_SECURITY_PROTOCOL, DUBAN_KAFKA_SASL_*, DUBAN_KAFKA_SSL_CAFILE)
reach every client Duban builds: the producers, the admin and consumer clients, and the stream processors' consumer.
The local broker (Tansu) has no SASL nor TLS, so what is checked is the configured client objects."""

from __future__ import annotations

import ssl

import certifi
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from duban.broker import broker_credentials, kafka_client_options, make_producer
from duban.consumeloop import make_consumer
from duban.settings import ServiceSettings


def scram_settings(tmp_path, protocol: str = "SASL_SSL") -> ServiceSettings:
    return ServiceSettings(kafka_bootstrap="duban-kafka-kafka-bootstrap:9093", kafka_security_protocol=protocol,
                           kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="duban-tracker",
                           kafka_sasl_password="s3cret", kafka_ssl_cafile=certifi.where(), data_dir=str(tmp_path))


def test_plaintext_by_default_for_the_local_broker():
    assert broker_credentials(ServiceSettings()) is None
    assert kafka_client_options(ServiceSettings(kafka_bootstrap="a:1,b:2")) == {
        "bootstrap_servers": "a:1,b:2", "security_protocol": "PLAINTEXT"}


async def test_sasl_ssl_reaches_producer_admin_and_consumers(tmp_path):
    settings = scram_settings(tmp_path)
    producer = make_producer(settings)
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    consumer = AIOKafkaConsumer(**kafka_client_options(settings))
    stream_consumer = make_consumer(settings, "duban-tracker", max_records=500)
    for client in (producer.client, admin._client, consumer._client, stream_consumer._client):
        assert client._security_protocol == "SASL_SSL"
        assert client._sasl_mechanism == "SCRAM-SHA-512"
        assert client._sasl_plain_username == "duban-tracker"
        assert client._sasl_plain_password == "s3cret"
        assert isinstance(client._ssl_context, ssl.SSLContext)
        assert client._ssl_context.verify_mode == ssl.CERT_REQUIRED and client._ssl_context.check_hostname


def test_tls_without_sasl(tmp_path):
    options = kafka_client_options(scram_settings(tmp_path, "SSL"))
    assert options["security_protocol"] == "SSL" and "sasl_mechanism" not in options
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_a_missing_ca_file_is_a_clear_error(tmp_path):
    settings = scram_settings(tmp_path).model_copy(update={"kafka_ssl_cafile": str(tmp_path / "missing-ca.crt")})
    with pytest.raises(FileNotFoundError):
        kafka_client_options(settings)


def test_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match="kafka_security_protocol"):
        ServiceSettings(kafka_security_protocol="SASL_SCRAM")
