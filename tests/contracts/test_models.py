"""The pydantic models agree with the JSON Schemas, and validate_event / parse_event report errors."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from duban.events import (
    CONTRACTS,
    FieldError,
    InvalidEvent,
    parse_event,
    validate_event,
)
from tests.contracts import invalid_examples, valid_examples

TYPES = sorted(CONTRACTS)
# Keywords that decide what a value may be; annotations (title, description, default) may differ.
CONSTRAINTS = (
    "type", "enum", "const", "pattern", "format", "minLength", "maxLength", "minimum", "maximum", "additionalProperties",
)


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return _resolve(root["$defs"][ref.removeprefix("#/$defs/")], root) if ref else node


def _shape(node: dict[str, Any], root: dict[str, Any], *, nullable: bool = False) -> dict[str, Any]:
    """What a (sub)schema admits, spelled the same way whether pydantic or a person wrote it."""
    node = _resolve(node, root)
    if "anyOf" in node:
        # pydantic writes `X | None` as anyOf [X, null]. Null is a value only of required fields:
        # the models refuse null for optional ones, which the contract says to omit instead.
        (value,) = [branch for branch in node["anyOf"] if branch != {"type": "null"}]
        node = dict(_resolve(value, root))
        if nullable:
            node["type"] = [node["type"], "null"]
            if "enum" in node:
                node["enum"] = [*node["enum"], None]
    shape = {keyword: node[keyword] for keyword in CONSTRAINTS if keyword in node}
    if isinstance(shape.get("type"), str):
        shape["type"] = [shape["type"]]
    if "properties" in node:
        required = set(node.get("required", ()))
        shape["required"] = sorted(required)
        shape["properties"] = {name: _shape(sub, root, nullable=name in required) for name, sub in node["properties"].items()}
    if "items" in node:
        shape["items"] = _shape(node["items"], root)
    return shape


def _pointers(error: ValidationError) -> set[str]:
    return {"".join(f"/{part}" for part in detail["loc"]) for detail in error.errors()}


def _assert_rejected_at(type_: str, event: dict[str, Any], path: str) -> None:
    assert path in {error.path for error in validate_event(event)}
    with pytest.raises(ValidationError) as raised:
        CONTRACTS[type_].model.model_validate(event)
    assert path in _pointers(raised.value)


@pytest.mark.parametrize("type_", TYPES)
def test_envelope_fields_are_the_same_in_schema_and_model(type_: str) -> None:
    schema, model_schema = CONTRACTS[type_].schema, CONTRACTS[type_].model.model_json_schema(by_alias=True)
    assert sorted(schema["properties"]) == sorted(model_schema["properties"])
    assert sorted(schema["required"]) == sorted(model_schema["required"])


@pytest.mark.parametrize("type_", TYPES)
def test_data_is_the_same_in_schema_and_model(type_: str) -> None:
    contract = CONTRACTS[type_]
    data_model = contract.model.model_fields["data"].annotation
    model_schema = data_model.model_json_schema(by_alias=True)
    assert _shape(contract.schema["$defs"]["data"], contract.schema) == _shape(model_schema, model_schema)


@pytest.mark.parametrize(("type_", "example"), valid_examples())
def test_example_parses_into_its_model(type_: str, example: dict[str, Any]) -> None:
    event = parse_event(example)
    assert type(event) is CONTRACTS[type_].model
    assert event == CONTRACTS[type_].model.model_validate(example)


@pytest.mark.parametrize(("type_", "case"), invalid_examples())
def test_invalid_example_is_rejected_by_the_model(type_: str, case: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CONTRACTS[type_].model.model_validate(case["event"])
    with pytest.raises(InvalidEvent):
        parse_event(case["event"])


@pytest.mark.parametrize("where", ["", "/data"])
@pytest.mark.parametrize(("type_", "example"), valid_examples())
def test_an_unknown_field_is_rejected_by_both(type_: str, example: dict[str, Any], where: str) -> None:
    event = copy.deepcopy(example)
    (event["data"] if where else event)["priority"] = "urgent"
    _assert_rejected_at(type_, event, f"{where}/priority")


@pytest.mark.parametrize("type_", TYPES)
def test_every_required_field_is_required_by_both(type_: str) -> None:
    contract = CONTRACTS[type_]
    example = contract.schema["examples"][0]
    for where, required in (("", contract.schema["required"]), ("/data", contract.schema["$defs"]["data"]["required"])):
        for name in required:
            event = copy.deepcopy(example)
            del (event["data"] if where else event)[name]
            _assert_rejected_at(type_, event, f"{where}/{name}")


def test_validate_event_reports_every_failing_field_with_its_path() -> None:
    event = copy.deepcopy(CONTRACTS["duban.task.progress-reported.v1"].schema["examples"][0])
    event["source"] = "departments/district-court"
    event["subject"] = "T00"
    del event["time"]
    del event["data"]["status"]
    event["data"]["percent"] = -5
    event["data"]["priority"] = "urgent"

    errors = validate_event(event)

    assert [error.path for error in errors] == ["/data/percent", "/data/priority", "/data/status", "/source", "/subject", "/time"]
    assert all(error.message for error in errors)
    with pytest.raises(InvalidEvent) as raised:
        parse_event(event)
    assert raised.value.errors == errors
    assert "/data/percent" in str(raised.value)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param(["not", "an", "object"], FieldError("", "an event must be a JSON object"), id="not-an-object"),
        pytest.param({"specversion": "1.0"}, FieldError("/type", "is required"), id="no-type"),
    ],
)
def test_validate_event_without_a_contract_to_apply(event: Any, expected: FieldError) -> None:
    assert validate_event(event) == [expected]


def test_validate_event_names_an_unknown_type() -> None:
    event = {**CONTRACTS["duban.case.closed.v1"].schema["examples"][0], "type": "duban.case.closed.v9"}
    [error] = validate_event(event)
    assert error.path == "/type"
    assert "duban.case.closed.v9" in error.message and "duban.case.closed.v1" in error.message
