"""The accepted-events ledger's rules: what an event says (its payload hash) and how a batch splits into
new events, repeats and conflicts; services/intake/store.py keeps the (source, id) the broker acknowledged.

A row is written only after the broker acknowledged the event. A crash (or a lost database write)
between the two means the event is on the topic but not here, so the department's retry publishes
it again; every consumer keys its processed-events ledger on the same (source, id), so the second
copy has no effect. Writing the row first would be worse: a broker failure after it would turn the
retry into a "duplicate" of an event that was never published, which is a lost event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import orjson

_DEFAULT_CONTENT_TYPE = "application/json"


def payload_hash(event: Mapping[str, Any]) -> bytes:
    """SHA-256 of what the event says, apart from its key (source, id): a repeat must say the same.
    datacontenttype is left out when it is the default, so the same event posted in structured
    mode (where it is optional) and in binary mode (where Content-Type carries it) compares equal.

    The hashed text is the canonical JSON `json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)` writes, and must stay exactly that: the ledger holds hashes of events
    accepted long ago. orjson writes the same bytes for strings, integers of 64 bits, booleans and
    objects of these (tests/contracts/test_fast_paths.py), and is used then; a float (whose text
    differs: 1e+16 against 1e16), a list or anything else goes to the json module."""
    said = {name: value for name, value in event.items() if name not in ("source", "id")}
    if said.get("datacontenttype") == _DEFAULT_CONTENT_TYPE:
        del said["datacontenttype"]
    return hashlib.sha256(canonical_json(said)).digest()


def canonical_json(value: dict[str, Any]) -> bytes:
    """json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False) as UTF-8."""
    if _orjson_writes_the_same(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except (orjson.JSONEncodeError, TypeError):
            pass  # an integer beyond 64 bits, a lone surrogate: the json module decides
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _orjson_writes_the_same(value: dict[str, Any], depth: int = 0) -> bool:
    for name, member in value.items():
        if type(name) is not str:
            return False
        kind = type(member)
        if kind is dict:
            if depth or not _orjson_writes_the_same(member, 1):  # an event's data, no deeper
                return False
        elif kind is not str and kind is not int and kind is not bool and member is not None:
            return False
    return True


def sort_out(events: list[Mapping[str, Any]], digests: list[bytes],
             previous: Mapping[str, bytes]) -> tuple[list[int], list[str], list[dict[str, Any]]]:
    """Split one source's events into the indices to publish, the ids of repeats (of an event accepted
    before, or earlier in the same batch) and the conflicts: an id that came with a different payload."""
    seen = dict(previous)
    fresh, duplicates, conflicts = [], [], []
    for index, (event, digest) in enumerate(zip(events, digests, strict=True)):
        before = seen.get(event["id"])
        if before is None:
            seen[event["id"]] = digest
            fresh.append(index)
        elif before == digest:
            duplicates.append(event["id"])
        else:
            where = "was accepted before" if event["id"] in previous else "is used earlier in this batch"
            conflicts.append({"index": index, "id": event["id"], "reason": f"id {event['id']!r} {where} for an"
                              " event with a different type, subject, time or data"})
    return fresh, duplicates, conflicts
