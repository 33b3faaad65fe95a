"""The notifier's OpenAPI document, generated from its routes and committed for drift checks.

    .venv/bin/python -m services.notifier.openapi > contracts/openapi/notifier.json   (make openapi-notifier)
"""

from __future__ import annotations

import sys

from duban import openapi
from services.notifier.api import router

OPENAPI_PATH = "contracts/openapi/notifier.json"

_PROBLEMS = {
    "/v1/escalations": {404: "task-not-found"},
    "/v1/escalations/{escalation_id}": {404: "escalation-not-found"},
    "/v1/escalations/{escalation_id}/history": {404: "escalation-not-found"},
    "/v1/escalations/{escalation_id}/acknowledge": {
        404: "escalation-not-found", 409: "escalation-resolved",
        422: "invalid-request, acknowledgement-in-the-past or acknowledgement-too-long"},
}


def document() -> dict:
    return openapi.service_document(
        router, title="Duban notifier", problems=_PROBLEMS,
        description="Escalations of overdue work, their notices and acknowledgements (docs/notifier.md).",
        problem_members={"now": {"type": "string"}, "latest": {"type": "string"}})


def render() -> str:
    return openapi.render(document())


if __name__ == "__main__":
    sys.stdout.write(render())
