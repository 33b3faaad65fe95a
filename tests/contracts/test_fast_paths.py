"""The fast accept path (duban.events.fast) says what the reference path says, byte for byte.

Reference: `validate_event` (jsonschema with the registry's ECMA-262 `pattern` and asserted
date-time and uri formats), `parse_event` (then the pydantic model) and `to_kafka`. Fast:
`fast_valid` (jsonschema-rs compiled from the same files) and `fast_record`. Cases: every contract
example, every invalid example, and a generated corpus: the examples with fields removed, added,
retyped or given awkward values (trailing newlines, non-ASCII digits, impossible dates, odd URIs,
integers written as 60.0, numbers beyond 64 bits), plus generated valid events whose records must
be identical. Also: the ledger's canonical JSON is the json module's, byte for byte.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from duban.events import CONTRACTS, DEPARTMENT_EVENT_TYPES, InvalidEvent, parse_event, to_kafka, validate_event
from duban.events.fast import fast_record, fast_valid, parse_event_fast
from duban.events.models import STORABLE_TEXT_PATTERN
from services.intake.domain.ledger import canonical_json, payload_hash
from tests.contracts import invalid_examples, valid_examples

EXAMPLES = [example for contract in CONTRACTS.values() for example in contract.schema["examples"]]
CORPUS = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference(event: Any) -> tuple[bool, Any]:
    """(schema-valid, record or None) the reference way."""
    schema_valid = validate_event(event) == []
    try:
        return schema_valid, to_kafka(parse_event(event))
    except InvalidEvent:
        return schema_valid, None


def parsed_or_errors(parse: Any, event: Any) -> Any:
    try:
        return parse(event)
    except InvalidEvent as invalid:
        return invalid.errors


def assert_agree(event: Any) -> None:
    schema_valid, record = reference(event)
    assert fast_valid(event) == schema_valid, event
    assert parsed_or_errors(parse_event_fast, event) == parsed_or_errors(parse_event, event), event
    fast = fast_record(event)
    if isinstance(event, dict) and isinstance(event.get("type"), str) and event["type"] in DEPARTMENT_EVENT_TYPES:
        assert fast == record, event  # accepted by both with the same record, or refused by both
    else:
        assert fast is None or fast == record, event


# --- contract examples --------------------------------------------------------------------------


@pytest.mark.parametrize(("type_", "example"), valid_examples())
def test_every_example_is_accepted_with_the_reference_record(type_: str, example: dict[str, Any]) -> None:
    assert fast_valid(example)
    assert parse_event_fast(example) == parse_event(example)
    record = fast_record(example)
    if type_ in DEPARTMENT_EVENT_TYPES:  # what intake takes; tracker events carry date-times in data
        assert record == to_kafka(parse_event(example)) == to_kafka(example)
    else:
        assert record is None


@pytest.mark.parametrize(("type_", "case"), invalid_examples())
def test_every_invalid_example_is_refused(type_: str, case: dict[str, Any]) -> None:
    assert validate_event(case["event"])
    assert not fast_valid(case["event"])
    assert parsed_or_errors(parse_event_fast, case["event"]) == parsed_or_errors(parse_event, case["event"])
    assert fast_record(case["event"]) is None


@pytest.mark.parametrize("event", [None, [], "event", 1, {}, {"type": None}, {"type": ["duban.case.opened.v1"]},
                                   {"type": "duban.task.abandoned.v1"}])
def test_what_is_not_an_event_of_a_known_type_is_refused(event: Any) -> None:
    assert validate_event(event)
    assert not fast_valid(event) and fast_record(event) is None


@pytest.mark.parametrize(("field", "value"), [
    ("subject", "T01\n"),  # ECMA-262 `$`: a final newline does not match
    ("subject", "T0\u0661"),  # ARABIC-INDIC DIGIT ONE: patterns say [0-9]
    ("time", "2021-09-30T16:20:00+08:00\n"),
    ("time", "2021-02-29T16:20:00+08:00"),  # not a leap year
    ("time", "2021-09-30 16:20:00+08:00"),
    ("time", "2021-09-30T16:20:00"),
    ("time", "2021-09-30T16:20:00.1234567+08:00"),
])
def test_the_registry_s_pattern_and_format_readings_hold(field: str, value: str) -> None:
    event = {**EXAMPLES[0], field: value}
    assert validate_event(event)
    assert not fast_valid(event) and fast_record(event) is None


def test_an_integer_written_as_60_0_goes_the_reference_way_and_is_refused() -> None:
    (event,) = [e for e in EXAMPLES if e["type"] == "duban.task.progress-reported.v1"][:1]
    event = copy.deepcopy(event)
    event["data"]["percent"] = 60.0
    assert fast_valid(event) and validate_event(event) == []  # JSON Schema: 60.0 is an integer
    assert fast_record(event) is None  # the model (strict) refuses it, so the fast path does not decide
    with pytest.raises(InvalidEvent):
        parse_event(event)


_FREE_TEXT = [(e, name) for e in EXAMPLES for name, field in CONTRACTS[e["type"]].schema["$defs"]["data"]["properties"].items()
              if field.get("pattern") == STORABLE_TEXT_PATTERN]


@pytest.mark.parametrize(("text", "storable"), [
    ("a\x00b", False), ("\ud800", False), ("a\udfffb", False), ("\ud83d\ude00", False),  # a pair written as two escapes
    ("\u202eevil\u202c", True), ("😀", True), ("\x01\x7f\ufffe", True),
])
def test_unstorable_free_text_is_refused_both_ways_at_its_pointer(text: str, storable: bool) -> None:
    """NUL and unpaired surrogates cannot be stored (docs/contracts.md); bidi controls and the rest can.
    Python's json reads "\\ud83d\\ude00" as one character, so two surrogates here are a lone pair."""
    for example, name in _FREE_TEXT:
        event = copy.deepcopy(example)
        event["data"][name] = text
        assert_agree(event)
        errors = {error.path for error in validate_event(event)}
        assert (f"/data/{name}" not in errors) == storable, (example["type"], name)


# --- generated corpus ---------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
    st.sampled_from([0, 1, 59, 60, 100, 101, -1, 60.0, 100.0, 1e16, 2**63, 2**64, 10**30, True, False, "", " ", "60"]),
)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                                max_size=3), max_leaves=6)

_digits = st.integers(0, 99).map(lambda n: f"{n:02d}")
_times = st.builds(
    lambda year, month, day, sep, hour, minute, second, fraction, offset, tail:
        f"{year}-{month}-{day}{sep}{hour}:{minute}:{second}{fraction}{offset}{tail}",
    st.sampled_from(["2021", "2024", "2100", "0000", "999", "20210"]),
    st.sampled_from(["01", "02", "04", "12", "13", "00", "1"]),
    st.sampled_from(["01", "28", "29", "30", "31", "32", "00"]),
    st.sampled_from(["T", "t", " ", "TT"]),
    st.sampled_from(["00", "09", "23", "24"]), st.sampled_from(["00", "59", "60"]), st.sampled_from(["00", "59", "60"]),
    st.sampled_from(["", ".", ".0", ".25", ".000", ".123456", ".1234567"]),
    st.sampled_from(["Z", "z", "+08:00", "-05:30", "+00:00", "-00:00", "+23:59", "+24:00", "+0800", "", "+08"]),
    st.sampled_from(["", "", "", "\n", " ", "x"]),
)
_urls = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}{path}",
    st.sampled_from(["http", "https", "HTTP", "ftp", "http:"]),
    st.sampled_from(["gulou.gov.cn", "a", "a..b", "-", ".", "", "例子.cn", "a_b.cn", "127.0.0.1", "[::1]", "a b"]),
    st.sampled_from(["", ":", ":80", ":99999", ":123456", ":x"]),
    st.one_of(st.sampled_from(["", "/", "/a/b?c=d#e", "/%41", "/%zz", "/%4", "/[x]", "/#a#b", "/a?b?c", "/ a", "/é",
                               "/a%2Fb", "/~user/", "/a|b", "/a\\b", "/a\n", "?q", "#f", "/a'b(c)*+,;=", "/@:!$&"]),
              st.text(alphabet="ab/?#[]%:@!$&'()*+,;=-._~ 0123456789AF\n", max_size=10).map(lambda p: "/" + p)),
)
_awkward_strings = st.one_of(
    _times, _urls, st.text(max_size=10),
    st.sampled_from(["\x00", "a\x00", "\ud800", "x\udc00y", "\u202e\u2066", "\ufeff"]),
    st.sampled_from(["T01", "T01\n", "T28", "T29", "T00", "T1", "t01", "T01 ", "T0\u0661", "T2-M1", "T20-M1", "T20-M1\n",
                     "/departments/tax-bureau", "/departments/tax-bureau\n", "/departments/Tax", "/departments/",
                     "/services/tracker", "service_item", "service_item\n", "2026", "2026-Q1", "2026-Q5", "2026-13",
                     "2026-01\n", "1.0", "1.0\n", "application/json", "application/json\n", "a" * 128, "a" * 129,
                     "说" * 200, "说" * 201, "😀" * 200, "😀" * 201, "x" * 2000, "x" * 2001, "in_progress", "done",
                     "urn:duban:contracts:events:duban.case.opened.v1#data", "abc", "ab", "a" * 64, "a" * 65,
                     "d277c34b-c884-4d4b-b385-5dcdcbfbacae", "-leading", "a:b.c_d-e"]),
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for name, value in node.items():
            found += _paths(value, (*prefix, name))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _parent(event: Any, path: tuple) -> Any:
    for part in path[:-1]:
        event = event[part]
    return event


@st.composite
def mutated_events(draw: st.DrawFn) -> Any:
    event = copy.deepcopy(draw(st.sampled_from(EXAMPLES)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(event)
        path = draw(st.sampled_from(paths))
        parent = _parent(event, path)
        operation = draw(st.sampled_from(["remove", "add", "value", "string", "string", "string"]))
        if operation == "remove":
            del parent[path[-1]]
        elif operation == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "note", "from", "Data", "id ", "partitionkey"]))] = draw(_values)
        elif operation == "value":
            parent[path[-1]] = draw(_values)
        else:
            parent[path[-1]] = draw(_awkward_strings)
    return event


@CORPUS
@given(mutated_events())
def test_a_mutated_event_gets_the_same_answer_both_ways(event: Any) -> None:
    assert_agree(event)


# Valid events with everything that may vary varied: the records must be identical.

_any_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)


@st.composite
def valid_department_events(draw: st.DrawFn) -> dict[str, Any]:
    example = copy.deepcopy(draw(st.sampled_from([e for e in EXAMPLES if e["type"] in DEPARTMENT_EVENT_TYPES])))
    example["id"] = draw(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,40}\Z"))
    example["time"] = draw(st.builds(
        lambda day, hour, fraction, offset: f"2026-02-{day:02d}T{hour:02d}:30:00{fraction}{offset}",
        st.integers(1, 28), st.integers(0, 23), st.sampled_from(["", ".0", ".5", ".000", ".25", ".123456", ".100000"]),
        st.sampled_from(["Z", "+08:00", "-05:30", "+00:00", "-00:00", "+14:00"])))
    for name in ("datacontenttype", "dataschema"):
        if draw(st.booleans()):
            example.pop(name, None)
        elif name == "datacontenttype":
            example[name] = "application/json"
        else:
            example[name] = f"urn:duban:contracts:events:{example['type']}#data"
    data = example["data"]
    for name in [n for n in ("note", "reference", "title", "step_name", "reason") if n in data]:
        if isinstance(data[name], str) and name != "reason" or example["type"] == "duban.case.cancelled.v1":
            data[name] = draw(_any_text)
    if "value" in data:
        data["value"] = draw(st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**80), 2**80),
                                       st.sampled_from([0, -0.0, 1e16, 1e-7, 5e-324, 1.7976931348623157e308])))
    if "evidence_url" in data or example["type"].startswith("duban.task."):
        data["evidence_url"] = draw(st.sampled_from(["https://gulou.gov.cn/a?b=c#d", "http://a.b:8080/%E4%B8%AD",
                                                     "https://x.cn/~u/(1)*+,;=!$&'@:"]))
    # Key order as the department sent it, which the record must not follow (the model's order).
    order = draw(st.permutations(list(data)))
    example["data"] = {name: data[name] for name in order}
    return example


@CORPUS
@given(valid_department_events())
def test_a_valid_event_gets_the_reference_record(event: dict[str, Any]) -> None:
    schema_valid, record = reference(event)
    assume(record is not None)  # a generated note may break a length limit; the corpus above covers refusals
    assert fast_valid(event) and schema_valid
    assert fast_record(event) == record


# --- the ledger's canonical JSON ----------------------------------------------------------------

_json_keys = st.text(st.characters(codec="utf-8"), max_size=5)
_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
              st.text(st.characters(codec="utf-8"), max_size=8)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_json_keys, inner, max_size=3), max_leaves=8)


@CORPUS
@given(st.dictionaries(_json_keys, _json_values, max_size=6))
def test_canonical_json_is_the_json_module_s(value: dict[str, Any]) -> None:
    assert canonical_json(value) == json.dumps(value, sort_keys=True, separators=(",", ":"),
                                               ensure_ascii=False).encode("utf-8")


def test_payload_hashes_of_the_examples_do_not_change() -> None:
    """Hashes in the ledger were written by the json module: the same events must hash the same."""
    import hashlib

    for example in EXAMPLES:
        said = {name: value for name, value in example.items() if name not in ("source", "id", "datacontenttype")}
        text = json.dumps(said, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        assert payload_hash(example) == hashlib.sha256(text).digest()
