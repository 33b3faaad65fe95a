"""Tests of the event contracts: contracts/events/*.json, contracts/asyncapi.yaml and duban.events.

The cases come from the contract files themselves (their `examples`, and the invalid examples in
contracts/events/invalid/), so a new event type or example is tested without touching the tests.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from duban.events.registry import CONTRACTS, CONTRACTS_DIR

INVALID_DIR = CONTRACTS_DIR / "invalid"


def valid_examples() -> list[Any]:
    """pytest params (event type, example) for every example of every schema."""
    return [
        pytest.param(type_, example, id=f"{type_}[{index}]")
        for type_, contract in sorted(CONTRACTS.items())
        for index, example in enumerate(contract.schema["examples"])
    ]


def invalid_examples() -> list[Any]:
    """pytest params (event type, case) for every case in contracts/events/invalid/."""
    return [
        pytest.param(path.stem, case, id=f"{path.stem}[{index}]")
        for path in sorted(INVALID_DIR.glob("*.json"))
        for index, case in enumerate(json.loads(path.read_text(encoding="utf-8")))
    ]
