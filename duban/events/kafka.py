"""Events on Kafka: CloudEvents Kafka protocol binding, binary content mode.

The record value is `data` as JSON, every other attribute travels in a `ce_<name>` header,
`datacontenttype` in `content-type`, and the record key is the event's subject (task, case or
indicator id) so that one aggregate's events stay in one partition, in order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from duban.events.models import Event
from duban.events.fast import parse_event_fast

Headers = list[tuple[str, bytes]]

_FORMAT = JSONFormat()


class KafkaRecordError(ValueError):
    """A record that cannot be read as a CloudEvent of this system (dead-letter it, do not retry)."""


def to_kafka(event: Event | Mapping[str, Any]) -> tuple[bytes, bytes, Headers]:
    """The (key, value, headers) of the record that carries `event`.

    An event in structured form is validated first (raises InvalidEvent), so nothing that breaks
    its contract reaches a topic.
    """
    if not isinstance(event, Event):
        event = parse_event_fast(event)
    attributes = {name: value for name, value in event if name != "data" and value is not None}
    # Optional fields left at their default are omitted: the contract refuses null for them.
    data = event.data.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    key = event.subject.encode("utf-8")
    message = ce_kafka.to_binary(CloudEvent(attributes, data), _FORMAT, key_mapper=lambda _: key)
    return key, message.value, list(message.headers.items())


def _structured(attributes: dict[str, Any], data: Any) -> dict[str, Any]:
    # Used as the SDK's event factory instead of its CloudEvent class, which would fill a missing
    # id with a fresh UUID and a missing time with "now": that would defeat de-duplication by
    # (source, id) and put a wrong instant on SLA clocks. Validation is left to validate_event.
    event = dict(attributes)
    if isinstance(event.get("time"), datetime):
        time = event["time"].isoformat()
        event["time"] = time[: -len("+00:00")] + "Z" if time.endswith("+00:00") else time
    if data is not None:
        event["data"] = data
    return event


def from_kafka(key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]) -> dict[str, Any]:
    """The event of a record, in structured form, ready for `validate_event` / `parse_event`.

    Binary mode is the contract; a structured-mode record (content-type
    application/cloudevents+json) is read as well, as the CloudEvents binding asks of receivers.
    Raises KafkaRecordError when the record cannot be decoded or its key is not its subject.
    """
    # The key is routing, not an event attribute: it is checked against the subject below rather
    # than handed to the SDK, which would add it to the event as a `partitionkey` extension.
    message = ce_kafka.KafkaMessage(headers=dict(headers), key=None, value=value)
    try:
        event: dict[str, Any] = ce_kafka.from_kafka(message, _FORMAT, _structured)
    except (ValueError, TypeError, AttributeError) as error:
        # The SDK's parsers surface bad UTF-8, JSON, time text or a non-object structured
        # envelope as whichever of these their failing step raises.
        raise KafkaRecordError(f"undecodable CloudEvent record: {error}") from error
    return _keyed_by_subject(key, event)


def _keyed_by_subject(key: bytes | None, event: dict[str, Any]) -> dict[str, Any]:
    subject = event.get("subject")
    if key is not None and isinstance(subject, str) and key != subject.encode("utf-8"):
        raise KafkaRecordError(f"record key {key!r} is not the event subject {subject!r}")
    return event


# Times the SDK's parser (dateutil's isoparse) and datetime.fromisoformat read alike: RFC 3339 with
# an upper-case T and Z (fromisoformat also takes offsets with seconds, isoparse 24:00 and ordinal dates).
_RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})")
# orjson reads an integer beyond 64 bits as a float where json keeps an int: such a value goes the reference way.
_LONG_DIGITS = re.compile(rb"\d{19}")


class _NotLean(Exception):
    pass


def _lean_time(text: str) -> str:
    if not _RFC3339.fullmatch(text):
        raise _NotLean
    written = datetime.fromisoformat(text).isoformat()
    return written[: -len("+00:00")] + "Z" if written.endswith("+00:00") else written


def read_record(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> dict[str, Any]:
    """`from_kafka(key, value, headers)`, the same event for every record, at a fraction of its cost.

    A binary-mode record with JSON data and an RFC 3339 time, which is what every producer of this
    system writes, is read with orjson and datetime.fromisoformat; anything else, and anything the
    lean way stumbles on, is read by `from_kafka`, which decides (tests/contracts/test_lean_read.py
    checks that the two agree)."""
    try:
        event: dict[str, Any] = {}
        for name, raw in headers:  # with lower-case names, the last of a repeated header counts, as in the SDK
            if not name.islower():
                raise _NotLean
            text = raw.decode("utf-8")  # the SDK decodes every header: one that is not UTF-8 it refuses
            if name.startswith("ce_"):
                event[name[3:]] = text
            elif name == "content-type":
                event["datacontenttype"] = text
        if ("specversion" not in event or event.get("datacontenttype") != "application/json"
                or _LONG_DIGITS.search(value or b"")):
            raise _NotLean
        if "time" in event:
            event["time"] = _lean_time(event["time"])
        if value and (data := orjson.loads(value)) is not None:
            event["data"] = data
    except (_NotLean, ValueError):  # UnicodeDecodeError and orjson.JSONDecodeError are ValueErrors
        return from_kafka(key, value, headers)
    return _keyed_by_subject(key, event)
