"""Every route of every service's OpenAPI document, through its real server: no token, no answer (401);
a department asking for another department's item is refused (403); lists show a department its own."""

from __future__ import annotations

import contextlib
import json
import uuid

import httpx
import pytest

from fastapi.routing import APIRoute

from services.board.api import pages
from tests.auth.conftest import Api, escalate, service_api
from tests.board.conftest import running_board
from tests.conftest import at
from tests.intake.conftest import progress

pytestmark = pytest.mark.database

MINE, THEIRS = "market-regulation", "tax-bureau"  # T09 is the tax bureau's alone
UNTIL = at("2021-09-28 10:00").isoformat()  # within the notifier test clock's acknowledgement window

# Each route: how to call it about the other department's items. "list": the route lists, and a
# department gets its own items only (what it lists is checked in each service's API tests).
ROUTES = {
    "intake": {
        ("POST", "/v1/events"): {"json": progress("T09", MINE), "headers": {"content-type": "application/cloudevents+json"}},
    },
    "tracker": {
        ("GET", "/v1/tasks"): {"params": {"department": THEIRS}},
        ("GET", "/v1/tasks/{task_id}"): {"path": {"task_id": "T09"}},
        ("GET", "/v1/tasks/{task_id}/history"): {"path": {"task_id": "T09"}},
        ("GET", "/v1/cases/{case_id}"): {"path": {"case_id": "R-1"}, "params": {"department": THEIRS}},
        ("GET", "/v1/departments/{code}/cases/{case_id}"): {"path": {"code": THEIRS, "case_id": "R-1"}},
        ("GET", "/v1/departments/{code}"): {"path": {"code": THEIRS}},
        ("POST", "/v1/tasks/{task_id}/milestones/{milestone_id}/extensions"): {
            "path": {"task_id": "T09", "milestone_id": "T09-M1"},
            "json": {"new_due": "2022-03-31", "reason": "系统对接延后", "evidence": []}},
        # Only the district office decides: any department is refused, whoever's request it is.
        ("POST", "/v1/extensions/{extension_id}/decision"): {"path": {"extension_id": 1},
                                                             "json": {"decision": "approve", "reason": "同意"}},
        ("GET", "/v1/extensions"): "list",
        ("POST", "/v1/tasks/{task_id}/verification"): {"path": {"task_id": "T09"}, "json": {"outcome": "verified"}},
        ("POST", "/v1/tasks/{task_id}/milestones/{milestone_id}/verification"): {
            "path": {"task_id": "T09", "milestone_id": "T09-M1"}, "json": {"outcome": "verified"}},
        ("GET", "/v1/verifications"): "list",
    },
    "metrics": {
        ("GET", "/v1/indicators"): "list",
        ("GET", "/v1/indicators/{indicator_id}"): {"path": {"indicator_id": "export_tax_refund_days"},
                                                   "params": {"department": THEIRS}},
    },
    "notifier": {
        ("GET", "/v1/escalations"): {"params": {"department": THEIRS}},
        ("GET", "/v1/escalations/{escalation_id}"): {"path": {"escalation_id": "T09"}},
        ("GET", "/v1/escalations/{escalation_id}/history"): {"path": {"escalation_id": "T09"}},
        ("POST", "/v1/escalations/{escalation_id}/acknowledge"): {"path": {"escalation_id": "T09"},
                                                                 "json": {"until": UNTIL}},
        ("GET", "/v1/deliveries"): "list",
        # Only the district office (the board's service token) hands a 督查通报 over for mailing.
        ("POST", "/v1/bulletins"): {"json": {"bulletin_id": 1, "week": "2021-W38", "title": "督查通报", "summary": [],
                                             "html": "<article></article>", "document": "UEsDBA=="}},
    },
}


@contextlib.asynccontextmanager
async def all_apis(database_url, kafka_bootstrap, tokens):
    async with contextlib.AsyncExitStack() as stack:
        yield {name: await stack.enter_async_context(service_api(name, database_url, kafka_bootstrap, tokens))
               for name in ROUTES}


def request_of(api: Api, method: str, path: str, spec: dict, escalations: dict[str, int]) -> dict:
    values = {k: escalations.get(v, v) if k == "escalation_id" else v for k, v in spec.get("path", {}).items()}
    request = {"method": method, "url": api.url + path.format(**values), "params": spec.get("params"),
               "headers": dict(spec.get("headers", {}))}
    if "json" in spec:
        request["content"] = json.dumps({**spec["json"], "id": str(uuid.uuid4())} if api.name == "intake"
                                        else spec["json"])
        request["headers"].setdefault("content-type", "application/json")
    return request


def assert_problem(response: httpx.Response, status: int, kind: str) -> None:
    assert response.status_code == status, (response.request.url, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/" + kind)


async def test_every_route_needs_a_token_and_keeps_departments_apart(database_url, kafka_bootstrap, tokens):
    async with all_apis(database_url, kafka_bootstrap, tokens) as apis, httpx.AsyncClient(timeout=30) as client:
        escalations = {"T09": await escalate(apis["notifier"], "T09")}
        for name, api in apis.items():
            # The table covers the committed document exactly: a new route cannot slip past this walk.
            assert set(ROUTES[name]) == api.operations(), f"{name}: routes and the walk differ"
            for (method, path), spec in ROUTES[name].items():
                request = request_of(api, method, path, spec if spec != "list" else {}, escalations)
                anonymous = await client.request(**request)
                assert_problem(anonymous, 401, "unauthenticated")
                assert anonymous.headers["www-authenticate"].startswith("Bearer realm=")
                mine = {**request, "headers": {**request["headers"], **tokens.headers(department=MINE)}}
                if spec == "list":
                    assert (await client.request(**mine)).status_code == 200
                else:
                    assert_problem(await client.request(**mine), 403, "forbidden")
        # The refusals changed nothing: the tax bureau's escalation is still unacknowledged.
        row = await apis["notifier"].pool.fetchrow("SELECT acknowledged_by FROM escalations WHERE id = $1",
                                                   escalations["T09"])
        assert row["acknowledged_by"] is None


# The board's pages: each asks the read APIs with the caller's own token, so a department's token meets the
# same refusals there. Forms are posted with the bearer header, which needs no CSRF value (not ambient).
BOARD_ROUTES = {
    ("GET", "/"): {"params": {"department": THEIRS}},
    ("GET", "/tasks/{task_id}"): {"path": {"task_id": "T09"}},
    ("POST", "/tasks/{task_id}/extensions/{extension_id}/decision"): {
        "path": {"task_id": "T09", "extension_id": 1}, "data": {"decision": "approve", "reason": "同意"}},
    ("POST", "/tasks/{task_id}/verification"): {"path": {"task_id": "T09"}, "data": {"outcome": "verified"}},
    ("POST", "/tasks/{task_id}/milestones/{milestone_id}/verification"): {
        "path": {"task_id": "T09", "milestone_id": "T09-M1"}, "data": {"outcome": "returned", "reason": "缺佐证"}},
    ("GET", "/indicators"): "list",
    ("GET", "/indicators/{indicator_id}"): {"path": {"indicator_id": "export_tax_refund_days"},
                                            "params": {"department": THEIRS}},
    ("GET", "/departments"): "list",
    ("GET", "/exports/ledger.{fmt}"): {"path": {"fmt": "xlsx"}, "list": True},
    ("GET", "/exports/indicators.{fmt}"): {"path": {"fmt": "csv"}, "list": True},
    ("POST", "/signout"): {"list": True},
    # The bulletins are circulated to every department; only the district office issues one.
    ("GET", "/bulletins"): "list",
    ("POST", "/bulletins"): {"data": {"week": "2021-W38"}},
    ("GET", "/bulletins/{bulletin_id}"): {"path": {"bulletin_id": 1}, "expect": 404},
    ("GET", "/bulletins/{bulletin_id}.docx"): {"path": {"bulletin_id": 1}, "expect": 404},
}


async def test_every_board_page_needs_a_token_and_keeps_departments_apart(database_url, kafka_bootstrap, tokens):
    routes = {(method, route.path) for route in pages.routes if isinstance(route, APIRoute) for method in route.methods}
    assert set(BOARD_ROUTES) == routes, "the board's pages and the walk differ"
    async with running_board(database_url, kafka_bootstrap, tokens) as board, \
            httpx.AsyncClient(base_url=board.url, timeout=30) as client:
        for (method, path), spec in BOARD_ROUTES.items():
            spec = {} if spec == "list" else spec
            request = {"method": method, "url": path.format(**spec.get("path", {})), "params": spec.get("params"),
                       "data": spec.get("data")}
            anonymous = await client.request(**request)
            assert_problem(anonymous, 401, "unauthenticated")
            assert anonymous.headers["www-authenticate"].startswith("Bearer realm=")
            mine = await client.request(**request, headers=tokens.headers(department=MINE))
            if spec.get("list", spec == {}):
                assert mine.status_code in (200, 303), (path, mine.text)
            else:
                assert mine.status_code == spec.get("expect", 403), (path, mine.text)
        for public in ("/signin", "/healthz", "/metrics", "/static/board.css"):
            assert (await client.get(public)).status_code == 200, public
