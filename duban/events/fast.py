"""The accept path for events that keep their contract: a compiled check and a direct Kafka record.

`validate_event` / `parse_event` (jsonschema, then the pydantic model) and `to_kafka` stay the
reference. They cost about 100 µs per event, most of it the JSON Schema check; a service that
takes events in bulk (intake) asks `fast_record` first, which answers in a few µs:

- the check is jsonschema-rs compiled from the same contract files, with formats asserted (as the
  registry asserts date-time and uri) and Rust's `regex` engine, whose `$` matches only at the very
  end, as the registry's ECMA-262 reading of `pattern` does ("T01\\n" is not a task id);
- the record is built from the event itself, byte for byte what `to_kafka(parse_event(event))` gives:
  the same headers in the same order, `time` written as the SDK writes the model's datetime, and
  `data` in the model's field order, numbers as the model holds them, serialised as the SDK does.

`fast_record` answers None whenever it is not certain: the event breaks its contract, or is of a
type whose data the model would rewrite in ways this path does not reproduce (date-times, nested
objects), or holds a value the model refuses though the schema admits it (an integer written 60.0).
The caller then goes the reference way, which accepts or lists every failing field.
tests/contracts/test_fast_paths.py proves the two ways agree on every contract example, every
invalid example and a generated corpus of mutated events.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

import jsonschema_rs

from pydantic import ValidationError as ModelValidationError

from duban.events.models import STORABLE_TEXT_PATTERN, Event
from duban.events.registry import CONTRACTS, EventContract, parse_event

Headers = list[tuple[str, bytes]]
Record = tuple[bytes, bytes, Headers]


def _for_rust(node: Any) -> Any:
    # Rust's regex cannot name a surrogate, and needs not: a Rust string holds none, and an instance
    # holding one never reaches the check (it fails to encode, which the callers read as "not fast").
    if isinstance(node, dict):
        return {k: _RUST_STORABLE_TEXT if k == "pattern" and v == STORABLE_TEXT_PATTERN else _for_rust(v)
                for k, v in node.items()}
    return [_for_rust(v) for v in node] if isinstance(node, list) else node


_RUST_STORABLE_TEXT = r"^[^\u0000]*$"


def compiled_validator(schema: Mapping[str, Any]) -> Any:
    """jsonschema-rs for a contract schema, reading it as the registry's Python validator does."""
    return jsonschema_rs.validator_for(_for_rust(dict(schema)), validate_formats=True,
                                       pattern_options=jsonschema_rs.RegexOptions())


def _compiled_valid(plan: _Plan, event: object) -> bool:
    try:
        return plan.validator.is_valid(event)
    except UnicodeEncodeError:  # an unpaired surrogate: not valid, and the reference way says where
        return False


def _integer(value: Any) -> Any:
    # JSON Schema counts 60.0 as an integer; the model (strict) does not, so such an event goes the
    # reference way and is refused there with the model's message.
    if type(value) is not int:
        raise _NotFast
    return value


def _number(value: Any) -> float:
    # The model holds a number as a float, so 5 is published as 5.0.
    return float(value)


def _same(value: Any) -> Any:
    return value


class _NotFast(Exception):
    pass


@dataclass(frozen=True)
class _Plan:
    """How one event type's record is written without the model: its data fields in the model's
    order with the conversion the model applies to each."""

    validator: Any
    fields: tuple[tuple[str, Callable[[Any], Any]], ...] | None  # None: only the check is fast
    dataschema: bytes | None


def _conversion(schema: Mapping[str, Any]) -> Callable[[Any], Any] | None:
    kind = schema.get("type")
    if kind == "string" and schema.get("format") != "date-time":
        return _same
    if kind == "boolean":
        return _same
    if kind == "integer":
        return _integer
    if kind == "number":
        return _number
    return None  # date-times, arrays, objects, nullable fields: the model rewrites them


def _plan(contract: EventContract) -> _Plan:
    data_schema = contract.schema["$defs"]["data"]["properties"]
    data_model = contract.model.model_fields["data"].annotation
    fields = []
    for name, field in data_model.model_fields.items():
        name = field.alias or name
        conversion = _conversion(data_schema[name])
        if conversion is None:
            fields = None
            break
        fields.append((name, conversion))
    dataschema = contract.schema["properties"]["dataschema"]["const"].encode("utf-8")
    return _Plan(compiled_validator(contract.schema), None if fields is None else tuple(fields), dataschema)


_PLANS: Mapping[str, _Plan] = MappingProxyType({type_: _plan(contract) for type_, contract in CONTRACTS.items()})


def _plan_of(event: object) -> _Plan | None:
    if type(event) is not dict:
        return None
    type_ = event.get("type")
    return _PLANS.get(type_) if type(type_) is str else None


def fast_valid(event: object) -> bool:
    """True when `event` keeps its type's JSON Schema (the compiled check); False when it does not
    or its type is unknown. Agrees with `validate_event(event) == []`."""
    plan = _plan_of(event)
    return plan is not None and _compiled_valid(plan, event)


def parse_event_fast(event: Mapping[str, Any]) -> Event:
    """`parse_event` with the compiled check in place of the Python one when the event keeps its
    contract (the two agree, see above); any doubt goes the reference way, which lists the errors."""
    plan = _plan_of(event)
    if plan is not None and _compiled_valid(plan, event):
        try:
            return CONTRACTS[event["type"]].model.model_validate(event)
        except ModelValidationError:
            pass  # the schema admits what the model refuses (60.0 for an integer): let parse_event say so
    return parse_event(event)


_CONTENT_TYPE = ("content-type", b"application/json")
_SPECVERSION = ("ce_specversion", b"1.0")


def binary_record(*, id: str, source: str, type: str, subject: str, time: bytes, data: bytes,
                  dataschema: bytes | None = None) -> Record:
    """The (key, value, headers) of an event already known to keep its contract, `time` and `data`
    written as they go on the wire: the headers are those `to_kafka` writes, in its order."""
    key = subject.encode("utf-8")
    headers = [_SPECVERSION, ("ce_id", id.encode("utf-8")), ("ce_source", source.encode("utf-8")),
               ("ce_type", type.encode("utf-8")), ("ce_subject", key), ("ce_time", time), _CONTENT_TYPE]
    if dataschema is not None:
        headers.append(("ce_dataschema", dataschema))
    return key, data, headers


def _time_header(text: str) -> bytes:
    # The model parses `time` into a datetime; the SDK writes it back with isoformat, +00:00 as Z.
    # A valid time without a fraction and with an offset other than ±00:00 comes back as it was.
    if "." not in text and not text.endswith("00:00"):
        return text.encode("utf-8")
    written = datetime.fromisoformat(text).isoformat()
    if written.endswith("+00:00"):
        written = written[:-6] + "Z"
    return written.encode("utf-8")


def fast_record(event: object) -> Record | None:
    """The (key, value, headers) `to_kafka(parse_event(event))` gives, when `event` keeps its
    contract and the fast path can write it; None otherwise (then ask `parse_event`)."""
    plan = _plan_of(event)
    if plan is None or plan.fields is None or not _compiled_valid(plan, event):
        return None
    data = event["data"]
    try:
        value = {name: convert(data[name]) for name, convert in plan.fields if name in data}
        time = _time_header(event["time"])
    except (_NotFast, ValueError, OverflowError):
        return None
    # json.dumps with its defaults is what the SDK's JSON format writes for JSON-native data.
    return binary_record(id=event["id"], source=event["source"], type=event["type"], subject=event["subject"],
                         time=time, data=json.dumps(value).encode("utf-8"),
                         dataschema=plan.dataschema if "dataschema" in event else None)
