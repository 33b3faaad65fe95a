"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS) that make the fuzzer's events speak as the
department whose key it holds, so that valid events get past the catalog rules and reach the
accept-and-publish path instead of ending in 403.

Only values that already satisfy the contract are swapped, and only for other values that satisfy
it too (an own source for a well-formed source, a task this department reports for a well-formed
task id, a case type it feeds for a known case type): an event the fuzzer made invalid stays invalid."""

from __future__ import annotations

import re
from typing import Any

import schemathesis

from duban.catalog import load_catalog

DEPARTMENT = "admin-service-center"
SOURCE = "/departments/" + DEPARTMENT
_WELL_FORMED_SOURCE = re.compile(r"^/departments/[a-z0-9-]+$")
_WELL_FORMED_TASK = re.compile(r"^T(0[1-9]|1[0-9]|2[0-8])$")
_WELL_FORMED_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$")
# Inside intake's sane-time window (after the floor, not ahead of the clock): the window's own refusals
# are tested in tests/intake/test_refusals.py.
_SANE_TIME = "2026-01-15T09:30:00+08:00"

_catalog = load_catalog()
_TASKS = sorted(t.id for t in _catalog.tasks if _catalog.may_report_task(DEPARTMENT, t.id))
_CASE_TYPES = sorted(c for c in _catalog.case_types if DEPARTMENT in _catalog.case_type_departments(c))


def _pick(options: list[str], value: str) -> str:
    """One of `options`, spread over them by the generated value (deterministic under the seed)."""
    return options[len(value) % len(options)]


def _own_data(data: Any) -> Any:
    if isinstance(data, dict) and data.get("case_type") in _catalog.case_types:
        return {**data, "case_type": _pick(_CASE_TYPES, str(data.get("reference", "")))}
    return data


def _own_event(event: Any) -> Any:
    if not isinstance(event, dict):
        return event
    event = {**event}
    if isinstance(event.get("source"), str) and _WELL_FORMED_SOURCE.match(event["source"]):
        event["source"] = SOURCE
    if isinstance(event.get("time"), str) and _WELL_FORMED_TIME.match(event["time"]):
        event["time"] = _SANE_TIME
    subject = event.get("subject")
    if (isinstance(event.get("type"), str) and event["type"].startswith("duban.task.")
            and isinstance(subject, str) and _WELL_FORMED_TASK.match(subject)):
        event["subject"] = _pick(_TASKS, str(event.get("id", "")))
    if "data" in event:
        event["data"] = _own_data(event["data"])
    return event


@schemathesis.hook
def map_body(ctx, body):
    if isinstance(body, list):
        return [_own_event(event) for event in body]
    if isinstance(body, dict) and "specversion" in body:
        return _own_event(body)
    return _own_data(body)  # binary mode: the body is the event's data
