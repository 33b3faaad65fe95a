"""The metrics service's OpenAPI document, generated from its routes and committed for drift checks.

    .venv/bin/python -m services.metrics.openapi > contracts/openapi/metrics.json   (make openapi-metrics)
"""

from __future__ import annotations

import sys

from duban import openapi
from services.metrics.api import router

OPENAPI_PATH = "contracts/openapi/metrics.json"

_PROBLEMS = {"/v1/indicators/{indicator_id}": {404: "indicator-not-found or department-not-found"}}


def document() -> dict:
    return openapi.service_document(
        router, title="Duban metrics", problems=_PROBLEMS,
        description="The plan's indicators with the cases behind them (docs/metrics.md); Prometheus reads /metrics.",
        problem_members={"known": {"type": "array", "items": {"type": "string"}}})


def render() -> str:
    return openapi.render(document())


if __name__ == "__main__":
    sys.stdout.write(render())
