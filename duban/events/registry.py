"""Event type → (model, JSON Schema), validation of events in structured JSON form, and the routing
of events to a service's code by their model class.

The JSON Schemas in contracts/events/ are the published contract, so `validate_event` checks an
event against them; `parse_event` then turns a valid event into its pydantic model. `build_event`
makes an event the system itself emits from its model, and `Dispatch` is how a service picks its
code for an event: by the event's model class, never by comparing type strings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from jsonschema import Draft202012Validator, ValidationError, validators
from pydantic import ValidationError as ModelValidationError

from duban.events.models import DEPARTMENT_EVENTS, TRACKER_EVENTS, Event, event_type

CONTRACTS_DIR = Path(__file__).resolve().parents[2] / "contracts" / "events"

# jsonschema only asserts a format whose checker library is installed and silently skips the
# others; the contract relies on these two, so a missing library must fail loudly at import.
_ASSERTED_FORMATS = {"date-time", "uri"}
_missing = _ASSERTED_FORMATS - set(Draft202012Validator.FORMAT_CHECKER.checkers)
if _missing:
    raise ImportError(
        f"JSON Schema format checks unavailable: {sorted(_missing)}; install rfc3339-validator and rfc3986-validator"
    )


@cache
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    # JSON Schema patterns are ECMA-262 regexes, whose `$` matches only at the very end; Python's
    # also matches before a final newline, which would let "T01\n" pass as a task id.
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = validators.extend(Draft202012Validator, {"pattern": _pattern})


@dataclass(frozen=True)
class FieldError:
    """One failing field: `path` is a JSON Pointer into the event (RFC 6901), "" for the event itself."""

    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        """The error as a member of a problem+json `errors` list."""
        return {"path": self.path, "message": self.message}


class InvalidEvent(ValueError):
    """An event that breaks its contract; `errors` lists every failing field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{error.path or '/'}: {error.message}" for error in errors))
        self.errors = errors


@dataclass(frozen=True)
class EventContract:
    """One event type and version: its pydantic model and its JSON Schema."""

    type: str
    model: type[Event]
    schema: Mapping[str, Any]
    validator: Draft202012Validator


def _load(model: type[Event]) -> EventContract:
    type_ = event_type(model)
    schema = json.loads((CONTRACTS_DIR / f"{type_}.json").read_text(encoding="utf-8"))
    return EventContract(type_, model, schema, _Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER))


CONTRACTS: Mapping[str, EventContract] = MappingProxyType(
    {contract.type: contract for contract in map(_load, (*DEPARTMENT_EVENTS, *TRACKER_EVENTS))}
)
DEPARTMENT_EVENT_TYPES = frozenset(map(event_type, DEPARTMENT_EVENTS))
TRACKER_EVENT_TYPES = frozenset(map(event_type, TRACKER_EVENTS))


def _pointer(parts: Iterable[str | int]) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def _field_errors(error: ValidationError) -> Iterator[FieldError]:
    # Point at the offending field itself, not at the object that lacks or has too many fields.
    path = list(error.absolute_path)
    if error.validator == "required":
        for name in error.validator_value:
            if name not in error.instance:
                yield FieldError(_pointer([*path, name]), "is required")
    elif error.validator == "additionalProperties":
        for name in error.instance.keys() - error.schema.get("properties", {}).keys():
            yield FieldError(_pointer([*path, name]), "is not a field of this event type")
    else:
        yield FieldError(_pointer(path), error.message)


def validate_event(event: object) -> list[FieldError]:
    """Every contract violation of `event` (structured form), sorted by path; empty when valid."""
    if not isinstance(event, Mapping):
        return [FieldError("", "an event must be a JSON object")]
    if "type" not in event:
        return [FieldError("/type", "is required")]
    contract = CONTRACTS.get(event["type"]) if isinstance(event["type"], str) else None
    if contract is None:
        return [FieldError("/type", f"unknown event type {event['type']!r}; known types: {', '.join(sorted(CONTRACTS))}")]
    errors = {field_error for error in contract.validator.iter_errors(event) for field_error in _field_errors(error)}
    return sorted(errors, key=lambda error: (error.path, error.message))


def validate_or_raise(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """`event` itself when it is valid; raises InvalidEvent listing every failing field otherwise."""
    errors = validate_event(event)
    if errors:
        raise InvalidEvent(errors)
    return event


def _model_errors(error: ModelValidationError) -> InvalidEvent:
    return InvalidEvent([FieldError(_pointer(detail["loc"]), detail["msg"]) for detail in error.errors()])


def parse_event(event: Mapping[str, Any]) -> Event:
    """The pydantic model of a valid event; raises InvalidEvent listing every failing field."""
    try:
        return CONTRACTS[validate_or_raise(event)["type"]].model.model_validate(event)
    except ModelValidationError as error:
        # The schema and the model are kept equivalent by tests; should they ever drift, the
        # caller still gets field errors rather than a bare exception.
        raise _model_errors(error) from error


E = TypeVar("E", bound=Event)


def build_event(model: type[E], **fields: Any) -> E:
    """An event of `model` from its attributes (`type` and a fixed `source` come from the model);
    raises InvalidEvent listing every failing field."""
    fields.setdefault("specversion", "1.0")
    fields.setdefault("type", model.TYPE)
    if hasattr(model, "SOURCE"):
        fields.setdefault("source", model.SOURCE)
    try:
        return model.model_validate(fields)
    except ModelValidationError as error:
        raise _model_errors(error) from error


H = TypeVar("H")


class Dispatch(Generic[H]):
    """A service's handlers keyed by event model class. For an event's type, `of` finds the handler
    and `route` the model with it; both None for a type the service leaves alone (its ledger still
    records the event)."""

    def __init__(self, routes: Mapping[type[Event], H]) -> None:
        self._by_type = {model.TYPE: (model, handler) for model, handler in routes.items()}

    def route(self, event_type: str) -> tuple[type[Event], H] | None:
        return self._by_type.get(event_type)

    def of(self, event_type: str) -> H | None:
        found = self._by_type.get(event_type)
        return None if found is None else found[1]
