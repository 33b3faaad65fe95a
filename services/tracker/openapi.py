"""The tracker's OpenAPI document, generated from its routes and committed for drift checks.

    .venv/bin/python -m services.tracker.openapi > contracts/openapi/tracker.json   (make openapi-tracker)
"""

from __future__ import annotations

import sys

from duban import openapi
from services.tracker.api import router

OPENAPI_PATH = "contracts/openapi/tracker.json"

# Problems each route answers with besides its 200 and the ones every route has (duban/openapi.py).
_PROBLEMS = {
    "/v1/tasks": {404: "department-not-found"},
    "/v1/tasks/{task_id}": {404: "task-not-found"},
    "/v1/tasks/{task_id}/history": {404: "task-not-found"},
    "/v1/cases/{case_id}": {404: "case-not-found", 409: "ambiguous-case"},
    "/v1/departments/{code}/cases/{case_id}": {404: "department-not-found or case-not-found"},
    "/v1/departments/{code}": {404: "department-not-found"},
    "/v1/tasks/{task_id}/milestones/{milestone_id}/extensions": {
        404: "task-not-found or milestone-not-found", 409: "milestone-done or extension-pending"},
    "/v1/extensions/{extension_id}/decision": {404: "extension-not-found", 409: "extension-decided"},
    "/v1/tasks/{task_id}/verification": {404: "task-not-found", 409: "nothing-awaits-verification",
                                         422: "reason-required"},
    "/v1/tasks/{task_id}/milestones/{milestone_id}/verification": {
        404: "task-not-found or milestone-not-found", 409: "nothing-awaits-verification", 422: "reason-required"},
}


def document() -> dict:
    return openapi.service_document(
        router, title="Duban tracker", problems=_PROBLEMS,
        description="Authoritative state of the plan's tasks, milestones and cases (docs/tracker.md).",
        problem_members={"departments": {"type": "array", "items": {"type": "string"}}})


def render() -> str:
    return openapi.render(document())


if __name__ == "__main__":
    sys.stdout.write(render())
