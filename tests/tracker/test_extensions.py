"""延期申请 over HTTP: a department asks, the district office decides, the light follows the decided date."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import REGISTRY

from duban.events.models import MilestoneExtensionDecided, MilestoneExtensionDecidedData
from services.tracker.api import install, router
from services.tracker.scheduled import reevaluate_all
from tests.conftest import read_api, serving
from tests.tracker.conftest import CATALOG, at, progress

pytestmark = pytest.mark.database

OWNER, OTHER = "market-regulation", "commerce"  # T07 is the market regulator's, not the commerce bureau's
# T07-M1 is due 2021-06-30; the tests stand on 2021-09-01, before the date asked for.
ASKED = {"new_due": "2021-10-29", "reason": "系统对接延后", "evidence": ["https://oa.gulou.gov.cn/docs/123"]}


@pytest.fixture
async def api(tracker, pool, tokens) -> str:
    await tracker.send(progress("T07", OWNER, "2021-08-20 10:00", "in_progress", 60))
    async with serving(install(read_api(router, pool, tokens), CATALOG, tracker.evaluator,
                                 lambda: tracker.now)) as url:
        yield url


async def light_of(client: httpx.AsyncClient) -> tuple[str, dict]:
    task = (await client.get("/v1/tasks/T07")).json()
    return task["light"], next(m for m in task["milestones"] if m["milestone_id"] == "T07-M1")


async def ask(api: str, tokens) -> dict:
    async with httpx.AsyncClient(base_url=api, headers=tokens.headers(department=OWNER, subject="mr-clerk")) as client:
        asked = await client.post("/v1/tasks/T07/milestones/T07-M1/extensions", json=ASKED)
    assert asked.status_code == 201, asked.text
    return asked.json()


async def test_an_approved_extension_moves_the_deadline_and_the_light_follows(tracker, api, pool, tokens):
    office = httpx.AsyncClient(base_url=api, headers=tokens.headers(subject="duban-office"))
    async with office:
        assert (await light_of(office))[0] == "red"  # T07-M1 is two months past due
        request = await ask(api, tokens)
        assert (request["status"], request["requested_by"], request["original_due"]) == (
            "requested", "mr-clerk", "2021-06-30")
        pending = (await office.get("/v1/extensions", params={"status": "requested"})).json()
        assert [e["id"] for e in pending["items"]] == [request["id"]] and pending["total"] == 1
        # Asked and not decided: the plan's date still rules.
        assert (await light_of(office))[0] == "red"

        decided = await office.post(f"/v1/extensions/{request['id']}/decision",
                                    json={"decision": "approve", "reason": "经审核同意"})
        assert decided.status_code == 200, decided.text
        assert (decided.json()["status"], decided.json()["decided_by"]) == ("approved", "duban-office")
        light, milestone = await light_of(office)
        assert light == "green"
        assert (milestone["original_due"], milestone["due"], milestone["status"]) == ("2021-06-30", "2021-10-29", "open")
        assert [(e["status"], e["reason"], e["decision_reason"]) for e in milestone["extensions"]] == [
            ("approved", "系统对接延后", "经审核同意")]
        assert (await office.get("/v1/extensions", params={"status": "requested"})).json()["total"] == 0

    [event] = await tracker.outbox(MilestoneExtensionDecided.TYPE)
    data = MilestoneExtensionDecidedData.model_validate(event["data"])
    assert (event["subject"], data.decision, str(data.due), data.decided_by) == ("T07", "approved", "2021-10-29",
                                                                                 "duban-office")
    assert [e["data"]["to"] for e in await tracker.outbox("duban.tracker.task.light-changed.v1")][-1] == "green"
    assert REGISTRY.get_sample_value("duban_tracker_milestones_extended") == 1

    # Past the approved date the milestone is overdue again: the new date is the deadline.
    await reevaluate_all(pool, tracker.evaluator, at("2021-11-01 09:00"))
    assert await pool.fetchval("SELECT light FROM tasks WHERE id = 'T07'") == "red"


async def test_a_rejected_extension_leaves_the_light_red(tracker, api, tokens):
    request = await ask(api, tokens)
    async with httpx.AsyncClient(base_url=api, headers=tokens.headers()) as office:
        rejected = await office.post(f"/v1/extensions/{request['id']}/decision",
                                     json={"decision": "reject", "reason": "理由不充分"})
        assert rejected.json()["status"] == "rejected"
        light, milestone = await light_of(office)
        assert (light, milestone["due"], milestone["status"]) == ("red", "2021-06-30", "overdue")
        assert [e["status"] for e in milestone["extensions"]] == ["rejected"]
        again = await office.post(f"/v1/extensions/{request['id']}/decision", json={"decision": "approve", "reason": "x"})
        assert (again.status_code, again.json()["type"].split("/")[-1]) == (409, "extension-decided")
    [event] = await tracker.outbox(MilestoneExtensionDecided.TYPE)
    assert (event["data"]["decision"], event["data"]["due"]) == ("rejected", "2021-06-30")


async def test_who_may_ask_and_decide(tracker, api, tokens):
    path = "/v1/tasks/T07/milestones/T07-M1/extensions"
    async with httpx.AsyncClient(base_url=api) as client:
        assert (await client.post(path, json=ASKED)).status_code == 401
        for headers in (tokens.headers("viewer"), tokens.headers(department=OTHER), tokens.headers()):
            refused = await client.post(path, json=ASKED, headers=headers)
            assert (refused.status_code, refused.headers["content-type"]) == (403, "application/problem+json")
        owner = tokens.headers(department=OWNER)
        early = await client.post(path, json={**ASKED, "new_due": "2021-06-01"}, headers=owner)
        assert (early.status_code, early.json()["type"].split("/")[-1]) == (422, "invalid-extension")
        missing = await client.post("/v1/tasks/T07/milestones/T07-M9/extensions", json=ASKED, headers=owner)
        assert missing.status_code == 404
        blank = await client.post(path, json={**ASKED, "reason": "  "}, headers=owner)
        assert blank.status_code == 422
        request = (await client.post(path, json=ASKED, headers=owner)).json()
        twice = await client.post(path, json=ASKED, headers=owner)
        assert (twice.status_code, twice.json()["type"].split("/")[-1]) == (409, "extension-pending")

        decision = f"/v1/extensions/{request['id']}/decision"
        verdict = {"decision": "approve", "reason": "ok"}
        assert (await client.post(decision, json=verdict)).status_code == 401
        for headers in (tokens.headers("viewer"), owner, tokens.headers(department=OTHER)):
            assert (await client.post(decision, json=verdict, headers=headers)).status_code == 403
        assert (await client.post("/v1/extensions/99999/decision", json=verdict,
                                  headers=tokens.headers())).status_code == 404
        # The other department lists none of the market regulator's requests.
        theirs = await client.get("/v1/extensions", headers=tokens.headers(department=OTHER))
        assert theirs.json()["total"] == 0
    assert await tracker.outbox(MilestoneExtensionDecided.TYPE) == []
