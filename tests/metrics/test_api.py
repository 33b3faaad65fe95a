"""/v1/indicators: figures and the cases behind them, problem+json on bad requests."""

from __future__ import annotations

import httpx
import pytest

from services.metrics.api import install, router
from services.metrics.openapi import OPENAPI_PATH, render
from services.metrics.settings import MetricsSettings
from tests.conftest import ROOT, read_api, serving
from tests.metrics.conftest import CATALOG, HOURS

REFUND, TAX = "export_tax_refund", "tax-bureau"


def test_the_committed_openapi_document_matches_the_routes():
    assert (ROOT / OPENAPI_PATH).read_text(encoding="utf-8") == render(), "run `make openapi-metrics`"


@pytest.fixture
async def api(pool, tokens) -> str:
    async with serving(install(read_api(router, pool, tokens), CATALOG, HOURS, MetricsSettings())) as url:
        yield url


@pytest.fixture
async def client(api, tokens):
    async with httpx.AsyncClient(base_url=api, headers=tokens.headers()) as client:
        yield client


@pytest.mark.database
async def test_indicator_lists_its_cases_and_clocks(feed, client):
    await feed.closed("R1", REFUND, TAX, "2021-09-30 09:00", "2021-10-08 10:00")
    await feed.closed("R2", REFUND, TAX, "2021-09-16 09:00", "2021-09-22 10:00")
    await feed.closed("R3", REFUND, TAX, "2021-10-08 09:00", "2021-10-15 10:00")

    listing = (await client.get("/v1/indicators", params={"period": "2021"})).json()
    refund = next(i for i in listing["items"] if i["indicator"] == "export_tax_refund_days")
    assert (refund["value"], refund["samples"], refund["compliant"], refund["light"]) == (3.333333, 3, True, "green")
    assert [d["department"] for d in refund["departments"]] == [TAX]
    assert len(listing["items"]) == len(CATALOG.indicators)

    page = (await client.get("/v1/indicators/export_tax_refund_days",
                             params={"period": "2021-Q4", "limit": 1, "offset": 1})).json()
    assert (page["value"], page["samples"]) == (3.5, 2)
    assert page["cases"]["total"] == 2 and [c["case_id"] for c in page["cases"]["items"]] == ["R3"]
    assert page["cases"]["items"][0]["working_days"] == 6
    assert [h["value"] for h in page["history"]] == [1.0, 3.5]


@pytest.mark.database
async def test_a_case_lists_its_paused_intervals_as_an_array(feed, client):
    await feed.closed("B1", "building_permit", "construction", "2021-11-01 09:00", "2021-11-12 10:00",
                      pauses=[("2021-11-02 09:00", "2021-11-09 09:00", "expert_review")])
    await feed.closed("B2", "building_permit", "construction", "2021-11-01 09:00", "2021-11-03 10:00")
    page = (await client.get("/v1/indicators/building_permit_days", params={"period": "2021"})).json()
    assert [(c["case_id"], c["paused_intervals"]) for c in page["cases"]["items"]] == [
        ("B2", []),
        ("B1", [{"from": "2021-11-02T09:00:00+08:00", "to": "2021-11-09T09:00:00+08:00", "reason": "expert_review"}])]


@pytest.mark.database
async def test_uncovered_cases_are_surfaced(feed, client):
    await feed.closed("U1", REFUND, TAX, "2028-12-28 09:00", "2029-01-06 09:00")
    listing = (await client.get("/v1/indicators", params={"period": "2029"})).json()
    assert listing["calendar"]["uncovered_cases"] == {REFUND: 1}
    detail = (await client.get("/v1/indicators/export_tax_refund_days", params={"period": "2029"})).json()
    assert (detail["value"], detail["unmeasured"], detail["compliant"]) == (None, 1, None)
    assert "2029" in detail["cases"]["items"][0]["clock_error"]


async def test_figures_on_a_provisional_year_say_so(feed, client):
    await feed.closed("V1", REFUND, TAX, "2026-12-28 09:00", "2027-01-06 09:00")
    await feed.closed("V2", REFUND, TAX, "2026-11-02 09:00", "2026-11-04 09:00")
    listing = (await client.get("/v1/indicators", params={"period": "2027"})).json()
    assert listing["calendar"]["provisional_years"] == [2027, 2028]
    power = next(i for i in listing["items"] if i["indicator"] == "power_connection_steps")
    assert (power["comparison"], power["target"], power["aspiration"]) == ("le", 3, 2)
    refund = next(i for i in listing["items"] if i["indicator"] == "export_tax_refund_days")
    assert (refund["value"], refund["provisional"]) == (6.0, True)
    detail = (await client.get("/v1/indicators/export_tax_refund_days", params={"period": "2027"})).json()
    assert [(c["case_id"], c["provisional"]) for c in detail["cases"]["items"]] == [("V1", True)]
    covered = (await client.get("/v1/indicators/export_tax_refund_days", params={"period": "2026"})).json()
    assert (covered["value"], covered["provisional"]) == (2.0, False)
    assert [c["provisional"] for c in covered["cases"]["items"]] == [False]


@pytest.mark.database
@pytest.mark.parametrize(("path", "params", "status", "kind"), [
    ("/v1/indicators/no_such_thing", {}, 404, "indicator-not-found"),
    ("/v1/indicators/export_tax_refund_days", {"department": "education"}, 404, "department-not-found"),
    ("/v1/indicators", {"period": "2021-Q5"}, 422, "invalid-request"),
])
async def test_problems(client, path, params, status, kind):
    response = await client.get(path, params=params)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith(kind)


@pytest.mark.database
async def test_a_department_sees_its_own_figures_and_cases(feed, api, tokens):
    await feed.closed("R1", REFUND, TAX, "2021-09-30 09:00", "2021-10-08 10:00")
    await feed.closed("Q1", "company_startup", "market-regulation", "2021-09-16 09:00", "2021-09-17 10:00")
    async with httpx.AsyncClient(base_url=api, headers=tokens.headers(department=TAX)) as client:
        listing = (await client.get("/v1/indicators", params={"period": "2021"})).json()
        assert {d["department"] for i in listing["items"] for d in i["departments"]} == {TAX}
        mine = (await client.get("/v1/indicators/export_tax_refund_days", params={"period": "2021"})).json()
        assert mine["department"] == TAX and [c["case_id"] for c in mine["cases"]["items"]] == ["R1"]
        plan_wide = await client.get("/v1/indicators/export_tax_refund_days", params={"department": "all"})
        assert plan_wide.status_code == 403 and plan_wide.json()["type"].endswith("/forbidden")
