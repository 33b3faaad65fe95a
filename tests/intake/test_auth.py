"""Who may say what, through the real server: 401 without a valid key, 403 saying why."""

from __future__ import annotations

import json

import pytest

from tests.intake.conftest import STRUCTURED, case_opened, progress

pytestmark = pytest.mark.database


async def post(intake, key: str | None, event: dict, **headers):
    async with intake.client(key) as client:
        return await client.post("/v1/events", content=json.dumps(event), headers={**STRUCTURED, **headers})


async def test_own_task_is_accepted(intake):
    key = await intake.key("market-regulation")
    assert (await post(intake, key, progress("T07", "market-regulation"))).status_code == 202


@pytest.mark.parametrize(("department", "event", "reason"), [
    ("market-regulation", progress("T09", "market-regulation"),
     "market-regulation is neither lead nor responsible unit of T09 (lead: tax-bureau; responsible: none)"),
    ("market-regulation", progress("T07", "tax-bureau"),
     "source '/departments/tax-bureau' is not yours: this key posts as '/departments/market-regulation'"),
    ("tax-bureau", case_opened("BK-1", "simple_bankruptcy", "tax-bureau"),
     "tax-bureau does not feed simple_bankruptcy cases (sent by district-court)"),
], ids=["other-departments-task", "wrong-source", "case-type-not-fed"])
async def test_refusals_say_exactly_why(intake, department, event, reason):
    response = await post(intake, await intake.key(department), event)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "https://duban.gulou.gov.cn/problems/forbidden"
    assert problem["events"] == [{"index": 0, "id": event["id"], "reason": reason}]
    assert await intake.published(timeout_s=1) == []


@pytest.mark.parametrize("authorization", [None, "Bearer dbk_market-regulation_" + "x" * 43, "Bearer nonsense",
                                           "Basic bWFya2V0OnNlY3JldA=="],
                         ids=["no-key", "unknown-key", "malformed-key", "not-bearer"])
async def test_without_a_valid_key_the_answer_is_401_with_a_challenge(intake, authorization):
    headers = {"authorization": authorization} if authorization else {}
    response = await post(intake, None, progress("T07", "market-regulation"), **headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="duban-intake"')
    assert response.json()["type"].endswith("/unauthenticated")


async def test_a_revoked_key_stops_working_at_once(intake):
    key = await intake.key("market-regulation")
    assert (await post(intake, key, progress("T07", "market-regulation"))).status_code == 202
    key_id = key[:len("dbk_market-regulation_") + 8]
    await intake.pool.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = $1", key_id)
    response = await post(intake, key, progress("T07", "market-regulation"))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
