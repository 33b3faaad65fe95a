"""The read API over HTTP through a real server, and its committed OpenAPI document."""

from __future__ import annotations

import httpx
import pytest

from services.tracker.api import install, router
from services.tracker.openapi import OPENAPI_PATH, render
from services.tracker.scheduled import reevaluate_all
from tests.conftest import ROOT, read_api, serving
from tests.tracker.conftest import CALENDAR, CATALOG, at, case_event, progress


def test_the_committed_openapi_document_matches_the_routes():
    assert (ROOT / OPENAPI_PATH).read_text(encoding="utf-8") == render(), "run `make openapi-tracker`"


@pytest.fixture
async def api(pool, tokens) -> str:
    async with serving(install(read_api(router, pool, tokens), CATALOG)) as url:
        yield url


@pytest.mark.database
async def test_tasks_filtered_paginated_and_in_detail(tracker, api, tokens):
    await tracker.send(progress("T07", "market-regulation", "2021-08-20 10:00", "in_progress", 60),
                       progress("T08", "market-regulation", "2021-08-20 10:00", "done", 100))
    async with httpx.AsyncClient(base_url=api, headers=tokens.headers()) as client:
        page = (await client.get("/v1/tasks", params={"area": "A3", "status": "in_progress"})).json()
        assert [t["id"] for t in page["items"]] == ["T07"]
        # Only T07 has reported and it is past its first milestone; every other task is still green.
        red = (await client.get("/v1/tasks", params={"light": "red"})).json()
        assert ([t["id"] for t in red["items"]], red["total"]) == (["T07"], 1)
        green = (await client.get("/v1/tasks", params={"light": "green", "limit": 100})).json()
        assert {t["id"] for t in green["items"]} == {t.id for t in CATALOG.tasks} - {"T07"}
        theirs = sorted(t.id for t in CATALOG.tasks_of_department("market-regulation"))
        mine = (await client.get("/v1/tasks", params={"department": "market-regulation", "limit": 1,
                                                      "offset": 1})).json()
        assert (len(mine["items"]), mine["limit"], mine["offset"]) == (1, 1, 1)
        assert ([t["id"] for t in mine["items"]], mine["total"]) == (theirs[1:2], len(theirs))
        task = (await client.get("/v1/tasks/T07")).json()
        assert [m["milestone_id"] for m in task["milestones"]] == ["T07-M1", "T07-M2"]
        assert task["history_total"] == 1 and task["light_basis"] == "working_days"

        missing = await client.get("/v1/tasks/T99")
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["type"].endswith("/task-not-found")
        bad = await client.get("/v1/tasks", params={"light": "blue"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query/light"
        assert (await client.get("/v1/tasks", params={"department": "nobody"})).status_code == 404


@pytest.mark.database
async def test_tasks_with_their_milestones_in_one_call_are_the_tasks_one_by_one(tracker, api, tokens):
    await tracker.send(progress("T07", "market-regulation", "2021-08-20 10:00", "in_progress", 60),
                       progress("T08", "market-regulation", "2021-08-20 10:00", "done", 100))
    async with httpx.AsyncClient(base_url=api, headers=tokens.headers()) as client:
        page = (await client.get("/v1/tasks", params={"include": "milestones", "limit": 100})).json()
        assert [t["id"] for t in page["items"]] == sorted(t.id for t in CATALOG.tasks) and page["total"] == 28
        for task_id in ("T07", "T08", "T21"):
            assert next(t for t in page["items"] if t["id"] == task_id) == \
                (await client.get(f"/v1/tasks/{task_id}")).json()
        plain = (await client.get("/v1/tasks", params={"limit": 100})).json()
        assert "milestones" not in plain["items"][0]
        bad = await client.get("/v1/tasks", params={"include": "reports"})
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
        assert bad.json()["errors"][0]["field"] == "query/include"

    async with httpx.AsyncClient(base_url=api, headers=tokens.headers("department", "market-regulation")) as client:
        page = (await client.get("/v1/tasks", params={"include": "milestones", "limit": 100})).json()
        # Exactly the tasks the department may open one by one, each as it sees it there.
        one_by_one = {t.id: await client.get(f"/v1/tasks/{t.id}") for t in CATALOG.tasks}
        theirs = sorted(task_id for task_id, answer in one_by_one.items() if answer.status_code == 200)
        assert {answer.status_code for answer in one_by_one.values()} == {200, 403}
        assert [t["id"] for t in page["items"]] == theirs and page["total"] == len(theirs)
        assert page["items"] == [one_by_one[task_id].json() for task_id in theirs]
        assert (await client.get("/v1/tasks", params={"include": "milestones", "department": "tax-bureau"})
                ).status_code == 403


@pytest.mark.database
async def test_cases_by_department_and_id(tracker, api, tokens):
    await tracker.send(
        case_event("opened", "Q-7", "2021-09-01 09:00", {}, department="market-regulation", case_type="company_startup"),
        case_event("opened", "Q-7", "2021-09-01 10:00", {}, department="admin-service-center",
                   case_type="company_startup"),
        case_event("opened", "R-9", "2021-09-01 09:00", {"reference": "退税9"}),
        case_event("paused", "R-9", "2021-09-02 09:00", {"reason": "supplement"}))
    async with httpx.AsyncClient(base_url=api, headers=tokens.headers()) as client:
        case = (await client.get("/v1/cases/R-9")).json()
        assert (case["status"], case["paused_since"]["reason"], len(case["history"])) == ("paused", "supplement", 2)
        ambiguous = await client.get("/v1/cases/Q-7")
        assert ambiguous.status_code == 409
        assert ambiguous.json()["departments"] == ["admin-service-center", "market-regulation"]
        one = (await client.get("/v1/cases/Q-7", params={"department": "market-regulation"})).json()
        assert one["department"] == "market-regulation"
        assert (await client.get("/v1/departments/market-regulation/cases/Q-7")).json() == one
        assert (await client.get("/v1/departments/tax-bureau/cases/Q-7")).status_code == 404

        view = (await client.get("/v1/departments/tax-bureau")).json()
        assert {t["id"] for t in view["tasks"]} == {t.id for t in CATALOG.tasks_of_department("tax-bureau")}
        assert [c["case_id"] for c in view["open_cases"]] == ["R-9"] and view["open_cases_total"] == 1


@pytest.mark.database
async def test_a_milestone_due_before_the_plan_is_retroactive_and_not_red_on_the_first_day(tracker, pool, tokens):
    issued = at("2021-05-11 09:00")
    await reevaluate_all(pool, tracker.evaluator, issued)
    async with serving(install(read_api(router, pool, tokens), CATALOG, tracker.evaluator, lambda: issued)) as url:
        async with httpx.AsyncClient(base_url=url, headers=tokens.headers()) as client:
            task = (await client.get("/v1/tasks/T02")).json()
    assert (task["light"], task["light_reason"], task["next_due"]) == ("yellow", "deadline_near", "2021-05-25")
    first = next(m for m in task["milestones"] if m["milestone_id"] == "T02-M1")
    assert (first["due"], first["status"], first["retroactive"], first["grace_until"]) == (
        "2021-03-31", "open", True, "2021-05-25")
    assert not any(m["retroactive"] for m in task["milestones"] if m["milestone_id"] != "T02-M1")


@pytest.mark.database
async def test_a_light_counted_in_a_provisional_year_says_so(tracker, pool, tokens):
    # T22's yearly duty done up to now: its 2027 occurrence decides, counted on the provisional 2027.
    tracker.now = at("2027-03-01 09:00")
    await tracker.send(progress("T22", "justice", "2027-03-01 09:00", "done", 100))
    await reevaluate_all(pool, tracker.evaluator, tracker.now)
    async with serving(install(read_api(router, pool, tokens), CATALOG, tracker.evaluator,
                                 lambda: tracker.now)) as url:
        async with httpx.AsyncClient(base_url=url, headers=tokens.headers()) as client:
            t22 = (await client.get("/v1/tasks/T22")).json()
            listed = {t["id"]: t for t in (await client.get("/v1/tasks", params={"limit": 50})).json()["items"]}
    assert CALENDAR.is_provisional(2027)
    assert (t22["light"], t22["next_due"], t22["provisional"]) == ("green", "2027-12-31", True)
    assert listed["T22"]["provisional"] is True
    assert (listed["T07"]["light"], listed["T07"]["provisional"]) == ("red", False)  # past due: no counting


@pytest.mark.database
async def test_task_history_is_paged_latest_first(tracker, api, tokens):
    await tracker.send(*(progress("T07", "market-regulation", f"2021-08-{day} 10:00", "in_progress", day)
                         for day in (16, 17, 18)))
    async with httpx.AsyncClient(base_url=api, headers=tokens.headers()) as client:
        task = (await client.get("/v1/tasks/T07")).json()
        assert "history" not in task and task["history_total"] == 3
        first = (await client.get("/v1/tasks/T07/history", params={"limit": 2})).json()
        assert [r["percent"] for r in first["items"]] == [18, 17] and first["total"] == 3
        rest = (await client.get("/v1/tasks/T07/history", params={"limit": 2, "offset": 2})).json()
        assert [r["percent"] for r in rest["items"]] == [16]
        assert (await client.get("/v1/tasks/T07/history", params={"limit": 201})).status_code == 422
        assert (await client.get("/v1/tasks/T99/history")).json()["type"].endswith("/task-not-found")


@pytest.mark.database
async def test_a_department_sees_its_own_tasks_and_cases(tracker, api, tokens):
    await tracker.send(case_event("opened", "R-1", "2021-09-01 09:00", {}),
                       case_event("opened", "Q-1", "2021-09-01 09:00", {}, department="market-regulation",
                                  case_type="company_startup"))
    async with httpx.AsyncClient(base_url=api, headers=tokens.headers(department="tax-bureau")) as client:
        listed = (await client.get("/v1/tasks", params={"limit": 200})).json()
        assert {t["id"] for t in listed["items"]} == {t.id for t in CATALOG.tasks
                                                      if CATALOG.may_report_task("tax-bureau", t.id)}
        assert "T07" in {t["id"] for t in listed["items"]} and "T02" not in {t["id"] for t in listed["items"]}
        assert (await client.get("/v1/tasks/T07")).status_code == 200  # a responsible unit of T07
        assert (await client.get("/v1/tasks/T02")).status_code == 403
        assert (await client.get("/v1/cases/R-1")).json()["department"] == "tax-bureau"
        # Another department's case is not found among its own, nor reachable by naming the department.
        assert (await client.get("/v1/cases/Q-1")).status_code == 404
        foreign = await client.get("/v1/cases/Q-1", params={"department": "market-regulation"})
        assert foreign.status_code == 403 and foreign.json()["type"].endswith("/forbidden")
