"""The board's pages through its real server, in front of the real read APIs: sign-in, what each role sees
and may do, the extension decision, the verification of a completion (办结销号), exports."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import re
import sys
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from docx import Document
from openpyxl import load_workbook

from duban.catalog import load_catalog
from services.board.documents import DOCX
from services.board.session import COOKIE
from tests.auth.conftest import escalate
from tests.board.conftest import running_board
from tests.conftest import ROOT
from tests.metrics.conftest import Feed as MetricsFeed
from tests.tracker.conftest import department_event, progress

pytestmark = pytest.mark.database

MINE, THEIRS = "market-regulation", "tax-bureau"  # T07 is led by market regulation; T09 is the tax bureau's alone
CATALOG = load_catalog()
EVIDENCE = "https://evidence.gulou.example/t07/2021-08.pdf"


@pytest.fixture(scope="module")
async def board(database_url, kafka_bootstrap, tokens):
    async with running_board(database_url, kafka_bootstrap, tokens) as board:
        await board.tracker.send(progress("T07", MINE, "2021-08-20 10:00", "in_progress", 40, note="一表填报已上线",
                                          evidence_url=EVIDENCE))
        yield board


@contextlib.asynccontextmanager
async def signed_in(board, token: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client that signed in with the token (the board keeps it in its cookie)."""
    async with httpx.AsyncClient(base_url=board.url, headers={"accept": "text/html"}, timeout=30) as client:
        answer = await client.post("/signin", data={"token": token, "next": "/"})
        assert answer.status_code == 303, answer.text
        yield client


def rows(page: str) -> list[str]:
    return re.findall(r'data-task="(T\d\d)"', page)


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)


async def test_sign_in_sets_a_strict_http_only_cookie_and_goes_where_it_was_asked(board, tokens):
    async with httpx.AsyncClient(base_url=board.url, headers={"accept": "text/html"}) as client:
        answer = await client.post("/signin", data={"token": tokens.issue("viewer"), "next": "/tasks/T07"})
        assert answer.status_code == 303 and answer.headers["location"] == "/tasks/T07"
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "Path=/" in cookie
        page = await client.get("/tasks/T07")
        assert page.status_code == 200 and "一表填报已上线" in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        assert page.headers["x-content-type-options"] == "nosniff"


async def test_sign_in_refuses_a_bad_token_and_never_redirects_off_the_board(board, tokens):
    async with httpx.AsyncClient(base_url=board.url, headers={"accept": "text/html"}) as client:
        refused = await client.post("/signin", data={"token": "not-a-jwt", "next": "/"})
        assert refused.status_code == 401 and "令牌无效" in refused.text and COOKIE not in refused.headers.get("set-cookie", "")
        expired = await client.post("/signin", data={"token": tokens.issue("viewer", ttl=-timedelta(minutes=5))})
        assert expired.status_code == 401
        away = await client.post("/signin", data={"token": tokens.issue("viewer"), "next": "//evil.example/x"})
        assert away.headers["location"] == "/"


async def test_without_credentials_a_browser_goes_to_sign_in_and_a_client_gets_401(board):
    async with httpx.AsyncClient(base_url=board.url) as client:
        browser = await client.get("/tasks/T07?page=2", headers={"accept": "text/html"})
        assert browser.status_code == 303 and browser.headers["location"] == "/signin?next=/tasks/T07?page=2"
        api = await client.get("/")
        assert api.status_code == 401 and api.headers["content-type"] == "application/problem+json"
        assert api.headers["www-authenticate"].startswith("Bearer realm=")
        client.cookies.set(COOKIE, "expired-or-forged")
        stale = await client.get("/", headers={"accept": "text/html"})
        assert stale.status_code == 303 and f'{COOKIE}=""' in stale.headers["set-cookie"]  # the cookie is dropped


async def test_overview_shows_the_28_tasks_by_area_with_lights_and_filters(board, tokens):
    async with signed_in(board, tokens.issue("viewer")) as client:
        page = (await client.get("/")).text
        assert sorted(rows(page)) == [f"T{n:02d}" for n in range(1, 29)]
        assert 'data-testid="count-total">28<' in page
        assert "一、持续提升投资服务水平" in page and "区市场监管局" in page  # areas and lead names in Chinese
        red = (await client.get("/", params={"light": "red"})).text
        # As of the tracker's clock (2021-09-01) T07's first milestone (2021-06-30) is past due.
        assert "T07" in rows(red) and all(f'data-task="{t}" data-light="red"' in red for t in rows(red))
        assert f'data-testid="count-total">{len(rows(red))}<' in red
        area = rows((await client.get("/", params={"area": "A3"})).text)
        assert area and all(CATALOG.task(t).area == "A3" for t in area)
        # The form sends every filter, empty for "all".
        everything = await client.get("/", params={"area": "", "department": "", "light": ""})
        assert everything.status_code == 200 and len(rows(everything.text)) == 28
        of_tax = rows((await client.get("/", params={"department": THEIRS})).text)
        assert "T09" in of_tax and "T01" not in of_tax


async def test_a_department_sees_only_its_own_items(board, tokens):
    async with signed_in(board, tokens.issue(department=MINE)) as client:
        mine = rows((await client.get("/")).text)
        assert "T07" in mine and "T09" not in mine and len(mine) < 28
        assert (await client.get("/tasks/T09")).status_code == 403
        assert (await client.get("/", params={"department": THEIRS})).status_code == 403
        assert (await client.get("/indicators/export_tax_refund_days", params={"department": THEIRS})).status_code == 403
        ledger = load_workbook(io.BytesIO((await client.get("/exports/ledger.xlsx")).content)).active
        assert [row[0] for row in ledger.iter_rows(min_row=2, values_only=True)] == sorted(mine)


async def test_task_detail_shows_milestones_reports_with_evidence_and_pages(board, tokens):
    async with signed_in(board, tokens.issue("viewer")) as client:
        page = (await client.get("/tasks/T07")).text
        assert "T07-M1" in page and "2021-06-30" in page and "已逾期" in page
        assert f'href="{EVIDENCE}"' in page and "进展报告（共 1 条）" in page
        beyond = await client.get("/tasks/T07", params={"page": 2})
        assert beyond.status_code == 200 and "尚无报告" in beyond.text
        assert (await client.get("/tasks/T99")).status_code == 404


async def test_the_district_office_approves_an_extension_from_the_board(board, tokens):
    tracker = board.apis["tracker"].url
    async with httpx.AsyncClient() as client:  # the tracker serves in this event loop
        asked = await client.post(tracker + "/v1/tasks/T07/milestones/T07-M2/extensions",
                                  headers=tokens.headers(department=MINE), json={"new_due": "2022-03-31", "reason": "系统对接延后", "evidence": [EVIDENCE]})
    assert asked.status_code == 201, asked.text
    extension = asked.json()["id"]
    action = f"/tasks/T07/extensions/{extension}/decision"
    async with signed_in(board, tokens.issue("viewer")) as viewer:
        page = (await viewer.get("/tasks/T07")).text
        assert f'data-extension="{extension}" data-status="requested"' in page and action not in page
        refused = await viewer.post(action, data={"decision": "approve", "reason": "同意", "csrf": csrf_of(page)})
        assert refused.status_code == 403  # the tracker's answer: only the district office decides
    async with signed_in(board, tokens.issue("district-office", subject="督查室 李科长")) as office:
        page = (await office.get("/tasks/T07")).text
        assert action in page
        forged = await office.post(action, data={"decision": "approve", "reason": "同意"})
        assert forged.status_code == 403 and "CSRF" in forged.text
        assert (await office.post(action, data={"decision": "approve", "reason": "同意",
                                                "csrf": "0" * 64})).status_code == 403
        still = (await office.get(tracker + "/v1/extensions", headers=tokens.headers("viewer"))).json()["items"]
        assert [e["status"] for e in still if e["id"] == extension] == ["requested"]
        decided = await office.post(action, data={"decision": "approve", "reason": "经审核同意", "csrf": csrf_of(page)})
        assert decided.status_code == 303 and decided.headers["location"] == "/tasks/T07#extensions"
        page = (await office.get("/tasks/T07")).text
        assert f'data-extension="{extension}" data-status="approved"' in page and "督查室 李科长" in page
        assert "2022-03-31" in page and "已延期" in page
        again = await office.post(action, data={"decision": "reject", "reason": "重复", "csrf": csrf_of(page)})
        assert again.status_code == 409  # the tracker's conflict, shown as the board's error page


async def test_the_district_office_returns_a_completion_and_verifies_a_done_report_from_the_board(board, tokens):
    """T16's milestone completion is returned with a reason, its done report verified; refusals are the tracker's."""
    centre = "admin-service-center"
    await board.tracker.send(department_event("duban.task.milestone-completed.v1", centre, "T16", "2021-08-30 16:00",
                                              {"milestone_id": "T16-M1", "note": "综合窗口已全覆盖"}))
    await board.tracker.send(progress("T16", centre, "2021-08-30 16:00", "done", 100, note="任务已完成，申请销号"))
    on_milestone, on_task = "/tasks/T16/milestones/T16-M1/verification", "/tasks/T16/verification"
    async with signed_in(board, tokens.issue("viewer")) as viewer:
        page = (await viewer.get("/tasks/T16")).text
        assert 'data-verification="T16-M1" data-status="awaiting"' in page
        assert 'data-verification="T16" data-status="awaiting"' in page and "待复核" in page
        assert on_task not in page  # a viewer verifies nothing
        refused = await viewer.post(on_task, data={"outcome": "verified", "csrf": csrf_of(page)})
        assert refused.status_code == 403  # the tracker's answer: only the district office verifies
    async with signed_in(board, tokens.issue("district-office", subject="督查室 王科长")) as office:
        page = (await office.get("/tasks/T16")).text
        assert on_task in page and on_milestone in page
        awaiting = (await office.get("/", params={"awaiting": "true"})).text  # 总览's 待复核 filter
        assert rows(awaiting) == ["T16"] and 'data-testid="count-awaiting">1<' in awaiting
        forged = await office.post(on_task, data={"outcome": "verified"})
        assert forged.status_code == 403 and "CSRF" in forged.text
        unexplained = await office.post(on_milestone, data={"outcome": "returned", "reason": " ", "csrf": csrf_of(page)})
        assert unexplained.status_code == 422  # the tracker's refusal: a return needs its reason
        returned = await office.post(on_milestone, data={"outcome": "returned", "reason": "缺少运行台账",
                                                         "csrf": csrf_of(page)})
        assert returned.status_code == 303 and returned.headers["location"] == "/tasks/T16#verifications"
        verified = await office.post(on_task, data={"outcome": "verified", "reason": "", "csrf": csrf_of(page)})
        assert verified.status_code == 303
        page = (await office.get("/tasks/T16")).text
        assert 'data-verification="T16-M1" data-status="returned"' in page and "缺少运行台账" in page
        assert 'data-verification="T16" data-status="verified"' in page and "督查室 王科长" in page
        assert on_task not in page and on_milestone not in page, "nothing awaits any more"
        assert "T16" not in rows((await office.get("/", params={"awaiting": "true"})).text)
        again = await office.post(on_task, data={"outcome": "verified", "csrf": csrf_of(page)})
        assert again.status_code == 409  # nothing awaits verification: the tracker's conflict, as the board's page
    async with httpx.AsyncClient() as client:
        listed = (await client.get(board.apis["tracker"].url + "/v1/verifications",
                                   headers=tokens.headers("viewer"))).json()["items"]
    assert {(v["milestone_id"], v["status"], v["decided_by"]) for v in listed if v["task_id"] == "T16"} == {
        ("T16-M1", "returned", "督查室 王科长"), (None, "verified", "督查室 王科长")}


async def test_task_detail_shows_each_escalations_history(board, tokens):
    escalation = await escalate(board.apis["notifier"], "T22")
    async with signed_in(board, tokens.issue("viewer")) as client:
        page = (await client.get("/tasks/T22")).text
    card = page[page.index(f'data-escalation="{escalation}"'):]
    assert "督办过程（1 条）" in card and 'data-kind="opened"' in card and "发起" in card


async def test_exports_carry_the_ledger_and_indicator_tables(board, tokens):
    async with signed_in(board, tokens.issue("viewer")) as client:
        answer = await client.get("/exports/ledger.xlsx")
        assert answer.headers["content-type"].startswith("application/vnd.openxmlformats")
        sheet = load_workbook(io.BytesIO(answer.content)).active
        table = list(sheet.iter_rows(values_only=True))
        assert table[0][:4] == ("任务编号", "领域", "任务", "牵头部门") and len(table) == 29
        t07 = next(row for row in table if row[0] == "T07")
        assert t07[3] == "区市场监管局" and t07[6] == 40 and t07[10] == "一表填报已上线"
        text = (await client.get("/exports/ledger.csv")).content
        assert text.startswith("\ufeff".encode())
        assert [r[0] for r in csv.reader(io.StringIO(text.decode("utf-8-sig")))][1:] == [f"T{n:02d}" for n in range(1, 29)]
        indicators = load_workbook(io.BytesIO((await client.get("/exports/indicators.xlsx",
                                                                 params={"period": "2021"})).content)).active
        body = list(indicators.iter_rows(values_only=True))
        assert body[0][0] == "指标编号" and len(body) == 16 and {row[3] for row in body[1:]} == {"2021"}
        assert (await client.get("/exports/ledger.pdf")).status_code == 422


async def test_indicator_and_department_pages_render(board, tokens):
    async with signed_in(board, tokens.issue("viewer")) as client:
        listing = await client.get("/indicators", params={"period": "2021"})
        assert listing.status_code == 200 and "正常出口退税业务平均办理时间" in listing.text
        assert (await client.get("/indicators", params={"period": ""})).status_code == 200
        assert (await client.get("/indicators/export_tax_refund_days",
                                 params={"period": "2021", "department": ""})).status_code == 200
        detail = await client.get("/indicators/export_tax_refund_days", params={"period": "2021"})
        assert detail.status_code == 200 and 'id="chart"' in detail.text and "2021-12" in detail.text
        report_fed = await client.get("/indicators/annual_tax_hours", params={"period": "2021"})
        assert report_fed.status_code == 200
        ranking = await client.get("/departments")
        assert ranking.status_code == 200 and 'data-department="market-regulation"' in ranking.text
        assert (await client.get("/indicators/no_such_indicator")).status_code == 404


async def test_a_case_shows_its_pauses_with_their_reasons(board, tokens):
    await MetricsFeed(board.apis["metrics"].pool).closed(
        "B1", "building_permit", "construction", "2021-11-01 09:00", "2021-11-12 10:00",
        pauses=[("2021-11-02 09:00", "2021-11-09 09:00", "expert_review")])
    async with signed_in(board, tokens.issue("viewer")) as client:
        page = (await client.get("/indicators/building_permit_days", params={"period": "2021"})).text
    row = page[page.index(">B1<"):]
    assert "专家评审" in row[:row.index("</tr>")]


async def test_the_district_office_issues_the_weekly_bulletin_and_everyone_reads_it(board, tokens):
    async with signed_in(board, tokens.issue(department=MINE)) as department:
        listing = (await department.get("/bulletins")).text
        assert 'action="/bulletins"' not in listing  # no form: only the district office issues
        refused = await department.post("/bulletins", data={"week": "2021-W35", "csrf": csrf_of(listing)})
        assert refused.status_code == 403
    async with signed_in(board, tokens.issue("district-office", subject="督查室 李科长")) as office:
        listing = (await office.get("/bulletins")).text
        assert (await office.post("/bulletins", data={"week": "2021-W35"})).status_code == 403  # no CSRF value
        bad = await office.post("/bulletins", data={"week": "2021-W60", "csrf": csrf_of(listing)})
        assert bad.status_code == 422 and "2021-W60" in bad.text
        issued = await office.post("/bulletins", data={"week": "2021-W35", "csrf": csrf_of(listing)})
        assert issued.status_code == 303
        page = await office.get(issued.headers["location"])
        # As of the end of the week (Sunday 2021-09-05, 24:00 Beijing, i.e. Monday 2021-09-06): T07's first milestone
        # (2021-06-30) is 68 days overdue.
        assert "鼓楼区优化营商环境工作督查通报（2021年第35周）" in page.text and "截至2021年09月06日 00:00" in page.text
        assert re.search(r"<td[^>]*>T07-M1</td>.*?<td[^>]*>2021-06-30</td><td[^>]*>68</td>", page.text, re.S)
        bulletin_id = issued.headers["location"].rsplit("/", 1)[1]
        document = await office.get(f"/bulletins/{bulletin_id}.docx")
        assert document.headers["content-type"] == DOCX
    word = Document(io.BytesIO(document.content))
    assert word.paragraphs[0].text == "鼓楼区优化营商环境工作督查通报（2021年第35周）"
    ranking = word.tables[0]
    assert [c.text for c in ranking.rows[0].cells][:2] == ["名次", "部门"] and len(ranking.rows) > 2
    async with signed_in(board, tokens.issue(department=THEIRS)) as reader:
        assert f'href="/bulletins/{bulletin_id}"' in (await reader.get("/bulletins")).text
        assert (await reader.get(f"/bulletins/{bulletin_id}")).status_code == 200


async def test_duban_bulletin_writes_the_word_document_and_archives_it(board, tokens, tmp_path):
    out = tmp_path / "2021-W38.docx"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")}
    env.update(DUBAN_DATABASE_URL=board.settings.database_url, DUBAN_SCHEMA_NAME=board.settings.schema_name,
               **{f"DUBAN_{name.upper()}_URL": api.url for name, api in board.apis.items()})
    # The APIs serve in this event loop: the command runs beside it, not blocking it.
    command = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "entrypoints.cli", "bulletin", "--week", "2021-W38", "--out", str(out),
        "--token", tokens.issue("district-office", subject="督查室 王主任"), env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await command.communicate()
    assert command.returncode == 0, stderr.decode()
    assert "鼓楼区优化营商环境工作督查通报（2021年第38周）" in stdout.decode()
    assert Document(out).paragraphs[0].text == "鼓楼区优化营商环境工作督查通报（2021年第38周）"
    async with signed_in(board, tokens.issue("viewer")) as viewer:
        listing = (await viewer.get("/bulletins")).text
        assert "2021-W38" in listing and "督查室 王主任" in listing
    refused = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "entrypoints.cli", "bulletin", "--week", "2021-W38", "--out", str(out),
        "--token", tokens.issue("viewer", ttl=-timedelta(minutes=1)), env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await refused.communicate()
    assert refused.returncode == 1 and "401" in stderr.decode()
