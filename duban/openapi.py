"""The OpenAPI documents of the read APIs (tracker, metrics, notifier), generated from their routers and
committed under contracts/openapi/ so that tests catch drift. Every route also declares the problems
all of them answer with: 401 and 403 (duban/auth.py) and 422 for bad parameters. The problem
document's schema is written here once, for these documents and intake's."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

from duban.auth import AUTH_PROBLEMS
from duban.problems import PROBLEM_JSON

def problem_schema(description: str, **members: Any) -> dict[str, Any]:
    """The JSON Schema of a problem document (duban/problems.py) with a service's own `members`:
    one schema for every service's OpenAPI document."""
    return {
        "type": "object", "description": description, "required": ["type", "title", "status", "detail"],
        "properties": {"type": {"type": "string", "format": "uri"}, "title": {"type": "string"},
                       "status": {"type": "integer"}, "detail": {"type": "string"}, "instance": {"type": "string"},
                       **members},
    }


def service_document(router: APIRouter, *, title: str, description: str,
                     problems: dict[str, dict[int, str]], problem_members: dict[str, Any] | None = None) -> dict:
    """`problems`: per path, the problems its routes answer with besides their 200 and the common ones."""
    app = FastAPI()
    app.include_router(router)
    doc = get_openapi(title=title, version="1", routes=app.routes, description=description)
    doc["components"]["schemas"]["Problem"] = problem_schema(
        "RFC 9457 problem details; some problems add members of their own.",
        errors={"type": "array", "items": {"type": "object"}}, **(problem_members or {}))
    for path, operations in doc["paths"].items():
        for operation in operations.values():
            common = {**AUTH_PROBLEMS, 422: "invalid-request"}
            if "requestBody" in operation:
                common[400] = "http-error (the body is not JSON)"
            for status, kinds in {**common, **problems.get(path, {})}.items():
                operation["responses"][str(status)] = {
                    "description": f"problem: {kinds}",
                    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    # Validation errors are problems here, not FastAPI's default body.
    for name in ("HTTPValidationError", "ValidationError"):
        doc["components"]["schemas"].pop(name, None)
    return doc


def render(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
