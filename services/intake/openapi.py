"""Intake's OpenAPI document: the routes as FastAPI describes them, plus the request bodies and
problems it cannot see (the handler reads the raw body to bound its size and speak three modes).

The event schemas are the published contracts of contracts/events/, moved into components (their
`data` definition becomes `<Name>Data`), so the OpenAPI document and validate_event cannot differ.

It is installed on the app by services/intake/app.py, which also renders it for contracts/openapi/intake.json.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from duban.events.registry import CONTRACTS, DEPARTMENT_EVENT_TYPES
from duban.openapi import problem_schema
from duban.problems import PROBLEM_BASE, PROBLEM_JSON
from services.intake.binding import BATCH, BINARY_DATA, STRUCTURED
from services.intake.settings import IntakeSettings

# Problem types intake answers with; docs/intake.md explains each.
PROBLEM_TYPES = {
    400: ["malformed-json", "malformed-batch", "invalid-events", "event-time-out-of-range"],
    401: ["unauthenticated"],
    403: ["forbidden"],
    409: ["id-conflict"],
    413: ["body-too-large", "batch-too-large"],
    415: ["unsupported-media-type"],
    429: ["rate-limited"],
    503: ["broker-unavailable", "database-unavailable"],
}

_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before resending the same request.",
                                "schema": {"type": "integer", "minimum": 1}}}
_WWW_AUTHENTICATE = {"WWW-Authenticate": {"description": "Bearer challenge (RFC 6750).", "schema": {"type": "string"}}}


def _component_name(event_type: str) -> str:
    # duban.<word>.<words>.v<n> -> <Word><Words>V<n>: TaskProgressReported.TYPE -> TaskProgressReportedV1
    words = event_type.removeprefix("duban.").replace("-", ".").split(".")
    return "".join(word[:1].upper() + word[1:] for word in words)


def event_components() -> dict[str, dict[str, Any]]:
    """Component schemas of the department events: `<Name>` (the event) and `<Name>Data`."""
    components = {}
    for event_type in sorted(DEPARTMENT_EVENT_TYPES):
        schema = copy.deepcopy(dict(CONTRACTS[event_type].schema))
        name = _component_name(event_type)
        data = schema.pop("$defs")["data"]
        data.pop("$anchor", None)
        for keyword in ("$schema", "$id"):
            schema.pop(keyword)
        schema["properties"]["data"] = {"$ref": f"#/components/schemas/{name}Data"}
        components[name], components[name + "Data"] = schema, data
    return components


def _refs(names: list[str]) -> dict[str, Any]:
    return {"anyOf": [{"$ref": f"#/components/schemas/{name}"} for name in names]}


def request_body(max_batch_events: int) -> dict[str, Any]:
    events = [_component_name(t) for t in sorted(DEPARTMENT_EVENT_TYPES)]
    return {
        "required": True,
        "description": (
            "CloudEvents 1.0 in any of the three HTTP content modes. A batch is all-or-nothing: one bad "
            f"event refuses the whole batch. At most {max_batch_events} events per batch. Binary mode: "
            "the attributes in ce-specversion, ce-id, ce-source, ce-type, ce-subject, ce-time (and "
            "optionally ce-dataschema) headers, percent-encoded as the HTTP binding says; the body is "
            "the event's data."),
        "content": {
            STRUCTURED: {"schema": _refs(events)},
            BATCH: {"schema": {"type": "array", "minItems": 1, "maxItems": max_batch_events, "items": _refs(events)}},
            BINARY_DATA: {"schema": _refs([name + "Data" for name in events])},
        },
    }


def problem_responses() -> dict[int, dict[str, Any]]:
    responses = {}
    for status, kinds in PROBLEM_TYPES.items():
        headers = _RETRY_AFTER if status in (429, 503) else _WWW_AUTHENTICATE if status == 401 else None
        response: dict[str, Any] = {
            "description": "Problem types: " + ", ".join(PROBLEM_BASE + kind for kind in kinds),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        if headers:
            response["headers"] = headers
        responses[status] = response
    return responses


_PROBLEM_SCHEMA = problem_schema(
    "RFC 9457 problem details. `events` lists the refused events of a request (index in the batch, 0 for a"
    " single event), each with its failing fields or the reason.",
    events={"type": "array", "items": {
        "type": "object",
        "required": ["index"],
        "properties": {
            "index": {"type": "integer", "minimum": 0},
            "id": {"type": ["string", "null"]},
            "reason": {"type": "string"},
            "errors": {"type": "array", "items": {
                "type": "object", "required": ["path", "message"],
                "properties": {"path": {"type": "string", "description": "JSON Pointer into the event"},
                               "message": {"type": "string"}}}},
        },
    }})


def install(app: FastAPI, settings: IntakeSettings) -> None:
    """Give `app` its OpenAPI document: FastAPI's, with the department events' schemas, the problem
    document and the request body of POST /v1/events, which the route reads raw."""

    def document_of_app() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema["paths"]["/v1/events"]["post"]["requestBody"] = request_body(settings.max_batch_events)
            schema["components"]["schemas"].update(event_components(), Problem=_PROBLEM_SCHEMA)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = document_of_app
