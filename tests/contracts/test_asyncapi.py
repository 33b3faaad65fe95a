"""contracts/asyncapi.yaml: accepted by the AsyncAPI parser and in step with contracts/events/."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from duban.events import CONTRACTS, DEPARTMENT_EVENT_TYPES

REPO = Path(__file__).resolve().parents[2]
ASYNCAPI = REPO / "contracts" / "asyncapi.yaml"
VALIDATOR = REPO / "tests" / "contracts" / "validate_asyncapi.mjs"
PAYLOAD_FORMAT = "application/schema+json;version=draft-2020-12"
DEAD_LETTER_HEADERS = {
    "dlq_reason", "dlq_error", "dlq_origin_topic", "dlq_origin_partition", "dlq_origin_offset", "dlq_consumer",
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def parser_installed() -> None:
    if not (REPO / "node_modules" / "@asyncapi" / "parser").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=REPO, check=True, timeout=300)


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", str(VALIDATOR), str(path)], cwd=REPO, capture_output=True, text=True, timeout=120)


def _follow(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """`node`, or what its internal "#/..." $ref points to."""
    ref = node.get("$ref")
    if ref is None:
        return node
    target = document
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return _follow(document, target)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_the_asyncapi_parser_finds_no_error(parser_installed: None) -> None:
    result = _validate(ASYNCAPI)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid AsyncAPI 3.0.0" in result.stdout


def test_the_parser_check_fails_a_broken_document(parser_installed: None, tmp_path: Path) -> None:
    # Guards the check itself: a dangling schema reference and a topic without partitions must fail it.
    shutil.copytree(ASYNCAPI.parent / "events", tmp_path / "events")
    broken = ASYNCAPI.read_text(encoding="utf-8").replace("duban.case.closed.v1.json", "duban.case.closed.v0.json")
    (tmp_path / "asyncapi.yaml").write_text(broken.replace("partitions: 12", "partitions: 0", 1), encoding="utf-8")

    result = _validate(tmp_path / "asyncapi.yaml")

    assert result.returncode == 1
    assert "duban.case.closed.v0.json" in result.stdout
    assert "/channels/deptEvents/bindings/kafka/partitions" in result.stdout


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    for ref in _refs(document):
        target, _, pointer = ref.partition("#")
        if not target:
            _follow(document, {"$ref": ref})
            continue
        node = json.loads((ASYNCAPI.parent / target).read_text(encoding="utf-8"))
        for part in pointer.removeprefix("/").split("/"):
            node = node[part]


@pytest.mark.parametrize("type_", sorted(CONTRACTS))
def test_every_event_type_has_its_message(document: dict[str, Any], type_: str) -> None:
    department = type_ in DEPARTMENT_EVENT_TYPES
    channel = document["channels"]["deptEvents" if department else "trackerChanges"]
    [message] = [_follow(document, m) for m in channel["messages"].values() if _follow(document, m)["name"] == type_]
    subject_pattern = CONTRACTS[type_].schema["properties"]["subject"]["pattern"]

    assert message["payload"]["schemaFormat"] == PAYLOAD_FORMAT
    assert message["payload"]["schema"] == {"$ref": f"./events/{type_}.json#/$defs/data"}
    base, specific = message["headers"]["allOf"]
    assert base["$ref"].endswith("DepartmentEventHeaders" if department else "TrackerEventHeaders")
    assert specific["properties"]["ce_type"] == {"const": type_}
    assert _follow(document, specific["properties"]["ce_subject"])["pattern"] == subject_pattern
    [trait] = [_follow(document, t) for t in message["traits"]]
    assert _follow(document, trait["bindings"]["kafka"]["key"])["pattern"] == subject_pattern


def test_topics_and_their_dead_letter_twins(document: dict[str, Any]) -> None:
    channels = {channel["address"]: channel for channel in document["channels"].values()}
    assert set(channels) == {"duban.dept-events", "duban.dept-events.dlq", "duban.tracker-changes", "duban.tracker-changes.dlq"}
    for address, channel in channels.items():
        kafka = channel["bindings"]["kafka"]
        assert (kafka["topic"], kafka["partitions"]) == (address, 12)
        assert kafka["replicas"] >= 3
    for address in ("duban.dept-events.dlq", "duban.tracker-changes.dlq"):
        [message] = [_follow(document, m) for m in channels[address]["messages"].values()]
        headers = _follow(document, message["headers"])
        assert set(headers["required"]) == set(headers["properties"]) == DEAD_LETTER_HEADERS


def test_common_headers_are_the_cloudevents_binary_mode_headers(document: dict[str, Any]) -> None:
    headers = document["components"]["schemas"]["CloudEventHeaders"]
    required = {"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_subject", "ce_time", "content-type"}
    assert set(headers["required"]) == required
    assert headers["properties"]["content-type"]["const"] == "application/json"
