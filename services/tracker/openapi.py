"""The tracker's OpenAPI document, generated from its routes and committed for drift checks.

    .venv/bin/python -m services.tracker.openapi > contracts/openapi/tracker.json   (make openapi-tracker)
"""

from __future__ import annotations

import json
import sys

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from duban.catalog import load_catalog
from duban.problems import PROBLEM_JSON
from services.tracker.api import make_router

OPENAPI_PATH = "contracts/openapi/tracker.json"

# Problems each route answers with besides its 200; duban.problems gives them all one shape.
# Every route also answers 422 invalid-request for bad parameters.
_PROBLEMS = {
    "/v1/tasks": {404: "department-not-found"},
    "/v1/tasks/{task_id}": {404: "task-not-found"},
    "/v1/cases/{case_id}": {404: "case-not-found", 409: "ambiguous-case"},
    "/v1/departments/{code}/cases/{case_id}": {404: "department-not-found or case-not-found"},
    "/v1/departments/{code}": {404: "department-not-found"},
}
_PROBLEM_SCHEMA = {
    "type": "object", "required": ["type", "title", "status", "detail"],
    "properties": {"type": {"type": "string", "format": "uri"}, "title": {"type": "string"},
                   "status": {"type": "integer"}, "detail": {"type": "string"}, "instance": {"type": "string"},
                   "errors": {"type": "array", "items": {"type": "object"}},
                   "departments": {"type": "array", "items": {"type": "string"}}},
}


def document() -> dict:
    app = FastAPI()
    app.include_router(make_router(load_catalog()))
    doc = get_openapi(title="Duban tracker", version="1", routes=app.routes,
                      description="Authoritative state of the plan's tasks, milestones and cases (docs/tracker.md).")
    doc["components"]["schemas"]["Problem"] = _PROBLEM_SCHEMA
    for path, problems in _PROBLEMS.items():
        responses = doc["paths"][path]["get"]["responses"]
        for status, kinds in {**problems, 422: "invalid-request"}.items():
            responses[str(status)] = {"description": f"problem: {kinds}",
                                      "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    # Validation errors are problems here, not FastAPI's default body.
    for name in ("HTTPValidationError", "ValidationError"):
        doc["components"]["schemas"].pop(name, None)
    return doc


def render() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
