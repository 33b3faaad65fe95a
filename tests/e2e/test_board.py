"""The board (督办看板) in headless chromium against the whole system as `make run` starts it: sign-in, the 28
tasks, a light that changes after a department's event, a department kept to its own items, the district
office approving an extension and returning a done report for a reason, no serious accessibility violation, and pages that fit a phone."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright

from tests.board.browser import DESKTOP, PAGES, PHONE, launch, new_page, overflows, serious_violations, sign_in
from tests.e2e.conftest import bearer_token, department_key, post, wait_until


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


def token(run_dir, *options: str) -> str:
    return bearer_token(run_dir, *options)["authorization"].removeprefix("Bearer ")


def page_of(browser, stack, viewport=DESKTOP, *options: str) -> Page:
    _, urls, run_dir, _ = stack
    page = new_page(browser, viewport)
    sign_in(page, urls["board"], token(run_dir, *options))
    return page


def light_of(page: Page, task_id: str) -> str:
    return page.get_attribute(f'tr[data-task="{task_id}"]', "data-light")


def test_sign_in_shows_the_28_tasks_and_a_light_changes_after_an_event(browser, stack):
    _, urls, run_dir, database_url = stack
    page = page_of(browser, stack, DESKTOP, "--role", "district-office")
    assert page.locator("tr[data-task]").count() == 28
    assert page.inner_text('[data-testid="count-total"]') == "28"
    # T01's 2021 milestones are long past: red, until its lead department reports it done.
    assert light_of(page, "T01") == "red"
    done = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/departments/dev-reform",
            "type": "duban.task.progress-reported.v1", "subject": "T01", "time": datetime.now(timezone.utc).isoformat(),
            "datacontenttype": "application/json",
            "data": {"status": "done", "percent": 100, "note": "投资项目审批事项全部入驻"}}
    assert post(urls, department_key(database_url, "dev-reform"), [done]).status_code == 202

    def turned_green() -> bool:
        page.reload()
        return light_of(page, "T01") == "green"

    wait_until(turned_green, 60, "T01's light to turn green on the board")
    assert "投资项目审批事项全部入驻" in page.inner_text('tr[data-task="T01"]')
    # The filter form, as a person uses it: green lights only (the other filters left at "all").
    page.select_option("#f-light", "green")
    page.get_by_role("button", name="筛选").click()
    page.wait_for_url("**/?area=&department=&light=green")
    lights = page.eval_on_selector_all("tr[data-task]", "rows => rows.map(r => [r.dataset.task, r.dataset.light])")
    assert ["T01", "green"] in lights and {light for _, light in lights} == {"green"}
    assert page.inner_text('[data-testid="count-total"]') == str(len(lights))


def test_a_department_sees_only_its_own_tasks_and_cases(browser, stack):
    _, urls, _, _ = stack
    page = page_of(browser, stack, DESKTOP, "--department", "market-regulation")
    shown = page.eval_on_selector_all("tr[data-task]", "rows => rows.map(r => r.dataset.task)")
    assert "T07" in shown and "T09" not in shown and len(shown) < 28
    assert page.goto(urls["board"] + "/tasks/T09").status == 403
    assert "无权查看或操作" in page.inner_text("h1")
    assert page.goto(urls["board"] + "/indicators/export_tax_refund_days?department=tax-bureau").status == 403
    assert page.goto(urls["board"] + "/tasks/T07").status == 200


def test_the_district_office_approves_an_extension(browser, stack):
    _, urls, run_dir, _ = stack
    asked = httpx.post(urls["tracker"] + "/v1/tasks/T07/milestones/T07-M2/extensions",
                       headers=bearer_token(run_dir, "--department", "market-regulation"),
                       json={"new_due": "2022-03-31", "reason": "证照分离改革需市级系统配合", "evidence": []})
    assert asked.status_code == 201, asked.text
    extension = asked.json()["id"]
    viewer = page_of(browser, stack, DESKTOP, "--role", "viewer")
    viewer.goto(urls["board"] + "/tasks/T07")
    assert viewer.locator(f'[data-extension="{extension}"] form').count() == 0  # a viewer decides nothing
    page = page_of(browser, stack, DESKTOP, "--role", "district-office", "--subject", "督查室 李科长")
    page.goto(urls["board"] + "/tasks/T07")
    card = page.locator(f'[data-extension="{extension}"]')
    card.locator("input[name=reason]").fill("经审核同意延期")
    card.get_by_role("button", name="同意延期").click()
    page.wait_for_url(urls["board"] + "/tasks/T07#extensions")
    card = page.locator(f'[data-extension="{extension}"]')
    assert card.get_attribute("data-status") == "approved"
    assert "督查室 李科长" in card.inner_text() and "经审核同意延期" in card.inner_text()
    decided = httpx.get(urls["tracker"] + "/v1/extensions?status=approved",
                        headers=bearer_token(run_dir, "--role", "viewer")).json()["items"]
    assert [e["decided_by"] for e in decided if e["id"] == extension] == ["督查室 李科长"]


def test_the_district_office_returns_a_done_report_with_its_reason(browser, stack):
    _, urls, run_dir, database_url = stack
    done = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/departments/district-court",
            "type": "duban.task.progress-reported.v1", "subject": "T20", "time": datetime.now(timezone.utc).isoformat(),
            "datacontenttype": "application/json", "data": {"status": "done", "percent": 100, "note": "破产案件繁简分流已落实"}}
    assert post(urls, department_key(database_url, "district-court"), [done]).status_code == 202
    page = page_of(browser, stack, DESKTOP, "--role", "district-office", "--subject", "督查室 王科长")
    card = page.locator('[data-verification="T20"][data-status="awaiting"]')

    def awaits() -> bool:
        page.goto(urls["board"] + "/tasks/T20")
        return card.count() == 1

    wait_until(awaits, 60, "T20's done report to await verification on the board")
    card.get_by_role("button", name="退回").click()  # without a reason the form does not go
    assert page.url == urls["board"] + "/tasks/T20" and card.count() == 1
    card.locator("input[name=reason]").fill("未见案件分流统计佐证")
    card.get_by_role("button", name="退回").click()
    page.wait_for_url(urls["board"] + "/tasks/T20#verifications")
    returned = page.locator('[data-verification="T20"][data-status="returned"]')
    assert "督查室 王科长" in returned.inner_text() and "未见案件分流统计佐证" in returned.inner_text()
    task = httpx.get(urls["tracker"] + "/v1/tasks/T20", headers=bearer_token(run_dir, "--role", "viewer")).json()
    assert task["status"] == "in_progress" and task["verification"]["reason"] == "未见案件分流统计佐证"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1366x768", "390x844"])
def test_every_page_is_accessible_and_fits_the_window(browser, stack, viewport):
    _, urls, _, _ = stack
    page = page_of(browser, stack, viewport, "--role", "district-office")
    for name, path in [*PAGES.items(), ("signin", "/signin")]:
        page.goto(urls["board"] + path)
        page.wait_for_load_state("networkidle")
        assert serious_violations(page) == [], name
        assert not overflows(page), f"{name} is wider than {viewport['width']} px"
        if name == "indicator":  # the chart drew, under the board's Content-Security-Policy
            assert page.locator("#chart canvas").count() == 1
