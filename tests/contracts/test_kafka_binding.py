"""CloudEvents Kafka binding, binary mode: to_kafka / from_kafka."""

from __future__ import annotations

import json
from typing import Any

import pytest

from duban.events import (
    CONTRACTS,
    InvalidEvent,
    KafkaRecordError,
    from_kafka,
    parse_event,
    to_kafka,
    validate_event,
)
from tests.contracts import valid_examples

PROGRESS = CONTRACTS["duban.task.progress-reported.v1"].schema["examples"][0]


@pytest.mark.parametrize(("type_", "example"), valid_examples())
def test_round_trip_gives_the_same_event(type_: str, example: dict[str, Any]) -> None:
    key, value, headers = to_kafka(parse_event(example))

    assert key == example["subject"].encode()
    assert json.loads(value) == example["data"]
    # The default content type is made explicit by the content-type header; nothing else changes.
    assert from_kafka(key, value, headers) == {**example, "datacontenttype": "application/json"}


@pytest.mark.parametrize(("type_", "example"), valid_examples())
def test_headers_carry_the_attributes(type_: str, example: dict[str, Any]) -> None:
    _, _, headers = to_kafka(parse_event(example))

    assert len({name for name, _ in headers}) == len(headers)
    decoded = {name: value.decode("utf-8") for name, value in headers}
    names = ("specversion", "id", "source", "type", "subject", "time", "dataschema")
    attributes = {name: example[name] for name in names if name in example}
    assert decoded == {**{f"ce_{name}": value for name, value in attributes.items()}, "content-type": "application/json"}


def test_structured_form_and_model_give_the_same_record() -> None:
    assert to_kafka(PROGRESS) == to_kafka(parse_event(PROGRESS))


def test_an_invalid_event_never_reaches_a_record() -> None:
    with pytest.raises(InvalidEvent) as raised:
        to_kafka({**PROGRESS, "subject": "T29"})
    assert [error.path for error in raised.value.errors] == ["/subject"]


def test_time_keeps_its_instant_and_offset() -> None:
    event = {**PROGRESS, "time": "2021-09-30T16:20:00.25+08:00"}
    back = from_kafka(*to_kafka(event))
    assert back["time"] == "2021-09-30T16:20:00.250000+08:00"
    assert parse_event(back) == parse_event(event)


def test_missing_attributes_are_reported_not_invented() -> None:
    key, value, headers = to_kafka(PROGRESS)
    stripped = [(name, raw) for name, raw in headers if name not in ("ce_id", "ce_time")]
    event = from_kafka(key, value, stripped)
    assert "id" not in event and "time" not in event
    assert {error.path for error in validate_event(event)} == {"/id", "/time"}


def test_a_record_without_key_is_read() -> None:
    _, value, headers = to_kafka(PROGRESS)
    assert from_kafka(None, value, headers)["subject"] == PROGRESS["subject"]


def test_a_key_other_than_the_subject_is_refused() -> None:
    _, value, headers = to_kafka(PROGRESS)
    with pytest.raises(KafkaRecordError, match="not the event subject"):
        from_kafka(b"T21", value, headers)


def test_a_structured_mode_record_is_read_too() -> None:
    headers = [("content-type", b"application/cloudevents+json; charset=UTF-8")]
    value = json.dumps(PROGRESS, ensure_ascii=False).encode()
    assert from_kafka(PROGRESS["subject"].encode(), value, headers) == PROGRESS


def _with_header(name: str, raw: bytes) -> list[tuple[str, bytes]]:
    _, _, headers = to_kafka(PROGRESS)
    return [(n, raw if n == name else v) for n, v in headers]


@pytest.mark.parametrize(
    ("value", "headers"),
    [
        pytest.param(b"{}", _with_header("ce_source", b"/departments/\xff"), id="header-not-utf8"),
        pytest.param(b"{}", _with_header("ce_time", b"yesterday"), id="time-unreadable"),
        pytest.param(b"{not json", [("content-type", b"application/cloudevents+json")], id="structured-not-json"),
        pytest.param(b"[1, 2]", [("content-type", b"application/cloudevents+json")], id="structured-not-object"),
    ],
)
def test_an_undecodable_record_raises(value: bytes, headers: list[tuple[str, bytes]]) -> None:
    with pytest.raises(KafkaRecordError, match="undecodable"):
        from_kafka(None, value, headers)


def test_data_that_is_not_json_is_left_for_validation() -> None:
    key, _, headers = to_kafka(PROGRESS)
    event = from_kafka(key, "进展：60%".encode(), headers)
    assert [error.path for error in validate_event(event)] == ["/data"]
