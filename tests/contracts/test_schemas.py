"""The JSON Schemas in contracts/events/: well-formed, self-describing, and their examples hold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from duban.events import (
    CONTRACTS,
    DEPARTMENT_EVENT_TYPES,
    TRACKER_EVENT_TYPES,
    data_schema_id,
    schema_id,
    validate_event,
)
from duban.events.registry import CONTRACTS_DIR
from tests.contracts import INVALID_DIR, invalid_examples, valid_examples

TYPES = sorted(CONTRACTS)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "contracts.md"


def test_every_schema_file_has_a_model_and_every_model_a_schema() -> None:
    assert sorted(path.stem for path in CONTRACTS_DIR.glob("*.json")) == TYPES
    assert sorted(path.stem for path in INVALID_DIR.glob("*.json")) == TYPES
    assert set(TYPES) == DEPARTMENT_EVENT_TYPES | TRACKER_EVENT_TYPES


@pytest.mark.parametrize("type_", TYPES)
def test_schema_is_valid_draft_2020_12(type_: str) -> None:
    Draft202012Validator.check_schema(CONTRACTS[type_].schema)


@pytest.mark.parametrize("type_", TYPES)
def test_schema_describes_a_closed_cloudevent_of_its_type(type_: str) -> None:
    schema = CONTRACTS[type_].schema
    properties = schema["properties"]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == schema_id(type_)
    assert schema["title"] and schema["description"]
    assert properties["type"]["const"] == type_
    assert properties["specversion"]["const"] == "1.0"
    assert properties["dataschema"]["const"] == data_schema_id(type_)
    assert properties["datacontenttype"]["const"] == "application/json"
    assert properties["time"]["format"] == "date-time"
    assert set(schema["required"]) == {"specversion", "id", "source", "type", "subject", "time", "data"}
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["data"]["additionalProperties"] is False
    expected_source = "pattern" if type_ in DEPARTMENT_EVENT_TYPES else "const"
    assert expected_source in properties["source"]


@pytest.mark.parametrize("type_", TYPES)
def test_schema_has_several_examples_and_invalid_examples(type_: str) -> None:
    assert len(CONTRACTS[type_].schema["examples"]) >= 2
    assert json.loads((INVALID_DIR / f"{type_}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(("type_", "example"), valid_examples())
def test_example_is_valid(type_: str, example: dict[str, Any]) -> None:
    assert example["type"] == type_
    assert validate_event(example) == []


@pytest.mark.parametrize(("type_", "case"), invalid_examples())
def test_invalid_example_fails_exactly_at_the_expected_fields(type_: str, case: dict[str, Any]) -> None:
    assert case["comment"]
    assert case["event"]["type"] == type_
    assert sorted({error.path for error in validate_event(case["event"])}) == case["expected_errors"]


@pytest.mark.parametrize("type_", TYPES)
def test_docs_catalogue_lists_the_type(type_: str) -> None:
    assert f"`{type_}`" in DOCS.read_text(encoding="utf-8")
