"""/v1/escalations: filters, acknowledgement and its problem+json refusals; the routes file."""

from __future__ import annotations

import pytest

from services.notifier.openapi import OPENAPI_PATH, render
from services.notifier.routes import Routes, RoutesError
from tests.conftest import ROOT
from tests.notifier.conftest import (
    CATALOG,
    at,
    escalation,
    light_changed,
    task_updated,
    write_routes,
)


def test_the_committed_openapi_document_matches_the_routes():
    assert (ROOT / OPENAPI_PATH).read_text(encoding="utf-8") == render(), "run `make openapi-notifier`"


@pytest.mark.database
async def test_escalations_filter_by_level_department_and_openness(feed, api):
    client, _ = api
    await feed.send(light_changed("T17", "yellow", at("2021-09-24 10:00")), light_changed("T28", "red", at("2021-09-24 10:00")),
                    light_changed("T05", "red", at("2021-09-24 10:00")),
                    task_updated("T05", "done", 100, "green", at("2021-09-24 11:00")))

    def items(**params):
        return client.get("/v1/escalations", params=params)

    assert [e["item"] for e in (await items()).json()["items"]] == ["T05", "T28", "T17"]
    assert [e["item"] for e in (await items(open="true")).json()["items"]] == ["T28", "T17"]
    assert [e["item"] for e in (await items(open="false")).json()["items"]] == ["T05"]
    assert [e["item"] for e in (await items(level=2, open="true")).json()["items"]] == ["T28"]
    body = (await items(department="health")).json()
    assert [e["item"] for e in body["items"]] == ["T17"] and body["items"][0]["level_name"] == "提醒"
    assert (await items(level=4)).status_code == 422
    assert [e["task_id"] for e in (await items(task_id="T28")).json()["items"]] == ["T28"]
    assert (await items(task_id="T01")).json() == {"items": [], "total": 0, "limit": 50, "offset": 0}
    unknown = await items(task_id="T29")
    assert unknown.status_code == 404 and unknown.json()["type"].endswith("/task-not-found")
    bad = await items(task_id="t28")
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["errors"][0]["field"] == "query/task_id"


@pytest.mark.database
async def test_acknowledgement_is_bounded_and_refused_clearly(feed, pool, api):
    client, clock = api
    clock.now = at("2021-09-27 09:00")
    await feed.send(light_changed("T17", "red", at("2021-09-27 09:00")), light_changed("T28", "red", at("2021-09-27 09:00")),
                    light_changed("T28", "green", at("2021-09-27 10:00")))
    open_id, resolved_id = (await escalation(pool, "T17"))["id"], (await escalation(pool, "T28"))["id"]

    async def acknowledge(escalation_id, until):
        return await client.post(f"/v1/escalations/{escalation_id}/acknowledge", json={"until": until})

    # 10 working days from Monday 27 September end on Friday 15 October (1–7 October off, 9 October worked).
    too_long = await acknowledge(open_id, at("2021-10-16 00:00:01").isoformat())
    assert too_long.status_code == 422 and too_long.headers["content-type"] == "application/problem+json"
    assert too_long.json()["type"].endswith("/acknowledgement-too-long") and too_long.json()["latest"].startswith("2021-10-16T00:00")
    assert (await acknowledge(open_id, at("2021-09-27 08:00").isoformat())).json()["type"].endswith("/acknowledgement-in-the-past")
    assert (await acknowledge(open_id, "2021-09-30T10:00:00")).status_code == 422  # no offset
    missing = await acknowledge(999999, at("2021-09-30 10:00").isoformat())
    assert missing.status_code == 404 and missing.json()["type"].endswith("/escalation-not-found")
    assert (await acknowledge(resolved_id, at("2021-09-30 10:00").isoformat())).status_code == 409
    done = await acknowledge(open_id, at("2021-10-15 18:00").isoformat())
    assert done.status_code == 200 and done.json()["acknowledged_until"].startswith("2021-10-15T10:00")
    assert done.json()["acknowledged_by"] == "督查室 王五"  # the token's subject


def test_routes_file_is_checked_against_the_catalog(tmp_path):
    with pytest.raises(RoutesError, match="no-such-unit"):
        Routes.load(write_routes(tmp_path, {"no-such-unit": [{"channel": "email", "to": ["a@b.cn"]}]}), CATALOG)
    with pytest.raises(RoutesError, match="webhook"):
        Routes.load(write_routes(tmp_path, {"health": [{"channel": "wecom"}]}), CATALOG)
    routes = Routes.load(write_routes(tmp_path, {"health": [
        {"channel": "wecom", "webhook": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=secret"},
        {"channel": "email", "to": ["Head@health.gulou.gov.cn"], "levels": [2]}]}), CATALOG)
    [robot] = routes.targets("health", 1)
    assert robot.recipient.startswith("wecom:") and "secret" not in robot.recipient
    assert [t.recipient for t in routes.targets("health", 2)] == [robot.recipient, "email:head@health.gulou.gov.cn"]
    assert routes.targets("education", 1) == [] and Routes.load(None, CATALOG).targets("health", 1) == []


@pytest.mark.database
async def test_who_may_see_and_acknowledge_which_escalation(feed, pool, api, tokens):
    client, clock = api
    clock.now = at("2021-09-27 09:00")
    # T09 is the tax bureau's alone; T07 is led by market regulation with the tax bureau responsible.
    await feed.send(light_changed("T09", "red", at("2021-09-27 09:00")), light_changed("T07", "red", at("2021-09-27 09:00")),
                    light_changed("T02", "red", at("2021-09-27 09:00")))
    t09, t07, t02 = [(await escalation(pool, task))["id"] for task in ("T09", "T07", "T02")]
    until = at("2021-09-30 10:00").isoformat()

    def as_(**who):
        return {"headers": tokens.headers(**who)}

    market = as_(department="market-regulation", subject="市场监管局 李四")
    listed = (await client.get("/v1/escalations", **market)).json()
    assert {e["item"] for e in listed["items"]} == {"T07"} and listed["total"] == 1
    assert (await client.get("/v1/escalations", params={"department": "tax-bureau"}, **market)).status_code == 403
    of_t07 = (await client.get("/v1/escalations", params={"task_id": "T07"}, **market)).json()
    assert [e["id"] for e in of_t07["items"]] == [t07]
    assert (await client.get("/v1/escalations", params={"task_id": "T09"}, **market)).status_code == 403
    assert (await client.get(f"/v1/escalations/{t09}", **market)).status_code == 403
    assert (await client.post(f"/v1/escalations/{t09}/acknowledge", json={"until": until}, **market)).status_code == 403
    assert (await client.post(f"/v1/escalations/{t02}/acknowledge", json={"until": until},
                              **as_(role="viewer"))).status_code == 403
    assert (await client.get(f"/v1/escalations/{t02}", **as_(role="viewer"))).status_code == 200
    # Who acknowledges is the token, never the body.
    named = await client.post(f"/v1/escalations/{t07}/acknowledge", json={"until": until, "by": "区长"}, **market)
    assert named.status_code == 422 and named.json()["type"].endswith("/invalid-request")
    done = await client.post(f"/v1/escalations/{t07}/acknowledge", json={"until": until}, **market)
    assert done.status_code == 200 and done.json()["acknowledged_by"] == "市场监管局 李四"
    assert (await escalation(pool, "T07"))["acknowledged_by"] == "市场监管局 李四"
