"""The consumers' lean record reader (`read_record`) reads every record as the CloudEvents SDK's
binding (`from_kafka`) does: the same event, or the same refusal. Cases: every contract example as
intake writes it, and a generated corpus of those records with awkward times, header names,
content types, keys and values (invalid JSON, NaN, integers beyond 64 bits, a byte-order mark,
lone surrogates, bytes that are not UTF-8, `null`)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duban.events import CONTRACTS, to_kafka
from duban.events.kafka import KafkaRecordError, from_kafka, read_record
from tests.contracts import valid_examples

RECORDS = [to_kafka(example) for contract in CONTRACTS.values() for example in contract.schema["examples"]]
CORPUS = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def read_or_refusal(read: Any, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> Any:
    try:
        return read(key, value, headers)
    except KafkaRecordError as refused:
        return ("refused", str(refused))


def assert_agree(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
    assert read_or_refusal(read_record, key, value, headers) == read_or_refusal(from_kafka, key, value, headers), \
        (key, value, headers)


@pytest.mark.parametrize(("type_", "example"), valid_examples())
def test_every_example_reads_as_the_sdk_reads_it(type_: str, example: dict[str, Any]) -> None:
    key, value, headers = to_kafka(example)
    assert read_record(key, value, headers) == from_kafka(key, value, headers)


TIMES = st.sampled_from([
    "2021-09-01T00:00:00Z", "2021-09-01T00:00:00z", "2021-09-01t00:00:00Z", "2021-09-01 00:00:00Z",
    "2021-09-01T00:00:00.5Z", "2021-09-01T00:00:00.123456789Z", "2021-09-01T08:00:00+08:00",
    "2021-09-01T00:00:00-00:00", "2021-09-01T00:00:00+0800", "2021-09-01T00:00:00", "2021-09-01",
    "20210901T000000Z", "2021-02-30T00:00:00Z", "2021-09-01T24:00:00Z", "2021-09-01T00:00:00+24:00",
    "2021-09-01T00:00:00+08:00:30", "2021-244T00:00:00Z", "٢٠٢١-09-01T00:00:00Z", "", "yesterday"])
VALUES = st.sampled_from([
    b"", b"null", b"[]", b'"text"', b"{not json", b'{"percent": NaN}', b'{"n": 123456789012345678901234567890}',
    b'\xef\xbb\xbf{"a": 1}', b'{"note": "\\ud800"}', b'{"a": 1, "a": 2}', b"\xff\xfe", b'{"a": 1e400}',
    b' {"a": -0.0} '])
CONTENT_TYPES = st.sampled_from([b"application/json", b"application/json; charset=utf-8", b"text/plain",
                                 b"application/cloudevents+json", b"\xff"])


@st.composite
def awkward_records(draw) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    key, value, headers = draw(st.sampled_from(RECORDS))
    headers = list(headers)
    change = draw(st.sampled_from(["time", "value", "content-type", "name-case", "repeat", "drop", "key", "none"]))
    if change == "time":
        headers = [(n, draw(TIMES).encode()) if n == "ce_time" else (n, v) for n, v in headers]
    elif change == "value":
        value = draw(VALUES)
    elif change == "content-type":
        headers = [(n, draw(CONTENT_TYPES)) if n == "content-type" else (n, v) for n, v in headers]
    elif change == "name-case":
        index = draw(st.integers(0, len(headers) - 1))
        headers[index] = (headers[index][0].upper(), headers[index][1])
    elif change == "repeat":
        headers.append(draw(st.sampled_from([("ce_time", b"2022-01-01T00:00:00Z"), ("ce_data", b"{}"),
                                             ("ce_id", b"\xc3\x28"), ("content-type", b"text/plain")])))
    elif change == "drop":
        headers.pop(draw(st.integers(0, len(headers) - 1)))
    elif change == "key":
        key = draw(st.sampled_from([None, b"T99", b"\xff"]))
    return key, value, headers


@CORPUS
@given(awkward_records())
def test_awkward_records_read_as_the_sdk_reads_them(record) -> None:
    assert_agree(*record)
