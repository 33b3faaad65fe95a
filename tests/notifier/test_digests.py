"""Digests through a real SMTP server on the working-day calendar: a digest route gets one message per
working day at the opening hour listing its department's open items and case warnings, nothing on
holidays, never twice; lead departments get the weekly digest on the week's first working day. An
item whose "done" awaits the district office's verification is not urged in either."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from prometheus_client import REGISTRY

from duban.events.models import CompletionAwaitingVerification, CompletionReturned
from services.notifier.handlers import NotifierHandler
from services.notifier.warnings import CaseWarningPlanner
from tests.notifier.conftest import (
    CATALOG,
    apply_alone,
    at,
    deliveries,
    escalation,
    light_changed,
    task_updated,
    tracker_event,
)
from tests.notifier.notices import notice_errors

pytestmark = pytest.mark.database

ROUTES = {
    "tax-bureau": [{"channel": "email", "to": ["duban@tax.gulou.gov.cn"], "mode": "digest"}],
    "health": [{"channel": "email", "to": ["office@health.gulou.gov.cn"]}],
}


def case_warning(case_id: str, threshold: int, as_of: str) -> dict:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/services/tracker",
            "type": "duban.tracker.case.warning.v1", "subject": case_id, "time": at(as_of).isoformat(),
            "datacontenttype": "application/json",
            "data": {"department": "tax-bureau", "case_type": "export_tax_refund", "opened_at": "2021-09-22T02:00:00Z",
                     "threshold": threshold, "indicator": "export_tax_refund_days", "unit": "working_days",
                     "allowed": 7.0, "elapsed": 4.0, "as_of": at(as_of).isoformat(), "paused": False}}


async def warn(pool, scheduler, event: dict) -> None:
    """The case warning applied as the notifier's consumer applies it, planned as of its as_of."""
    now = datetime.fromisoformat(event["data"]["as_of"])
    warnings = NotifierHandler(CATALOG, CaseWarningPlanner(CATALOG, scheduler.routes, lambda moment: moment, lambda: now))
    await apply_alone(pool, warnings, event)


async def test_a_digest_route_gets_one_message_a_working_day_with_its_open_items(pool, feed, make_scheduler,
                                                                                 smtp_server):
    scheduler = await make_scheduler(ROUTES, weekly_digest=False)
    _, mailbox = smtp_server

    # Wednesday: T09 (led by the tax bureau) turns red; a refund case passes half its time.
    await feed.send(light_changed("T09", "red", at("2021-09-29 10:00")))
    await warn(pool, scheduler, case_warning("TSR-9", 50, "2021-09-29 15:00"))
    await scheduler.run_once(pool, at("2021-09-30 08:00"))
    assert mailbox.messages == []  # the route takes a digest: nothing goes out at once
    assert await deliveries(pool, kind="case-warning") == []

    # Thursday before 08:30: not yet. At 08:30, one digest; a later round, or a second replica, adds none.
    await scheduler.run_once(pool, at("2021-09-30 08:29"))
    assert mailbox.messages == []
    for moment in ("2021-09-30 08:30", "2021-09-30 11:00"):
        await scheduler.run_once(pool, at(moment))
    [(rcpt, digest)] = mailbox.messages
    assert rcpt == ["duban@tax.gulou.gov.cn"]
    assert digest["Subject"] == "【督办日报】区税务局 2021年9月30日：1项督办事项，1件案件预警"
    body = digest.get_content()
    assert "T09 提升纳税便利化水平（红灯，截止 2021年12月31日，催办）：请牵头部门负责同志督促推进，尽快完成。" in body
    assert "出口退税 TSR-9 已用时50%（4/7个工作日）" in body

    # National Day holiday: no digest. Friday 8 October, the next working day: T09 is still red; the
    # case warning was in the last digest already.
    await scheduler.run_once(pool, at("2021-10-04 09:00"))
    assert len(mailbox.messages) == 1
    await scheduler.run_once(pool, at("2021-10-08 08:30"))
    _, second = mailbox.messages[1]
    assert second["Subject"] == "【督办日报】区税务局 2021年10月8日：1项督办事项，0件案件预警"
    assert second["Message-ID"] != digest["Message-ID"]
    sent = await deliveries(pool, kind="digest")
    assert [(d["item"], str(d["window_start"]), d["status"]) for d in sent] == [
        ("tax-bureau", "2021-09-30", "sent"), ("tax-bureau", "2021-10-08", "sent")]


async def test_lead_departments_get_the_weekly_digest_on_the_weeks_first_working_day(pool, feed, make_scheduler,
                                                                                     smtp_server):
    scheduler = await make_scheduler(ROUTES, weekly_digest=True)
    _, mailbox = smtp_server
    await feed.send(light_changed("T09", "red", at("2021-09-29 10:00")),
                    light_changed("T10", "yellow", at("2021-09-29 10:00")))
    # The week of 4 October is National Day's: its first working day is Friday the 8th.
    await scheduler.run_once(pool, at("2021-10-07 09:00"))
    assert not [m for _, m in mailbox.messages if "周报" in m["Subject"]]
    await scheduler.run_once(pool, at("2021-10-08 08:30"))
    await scheduler.run_once(pool, at("2021-10-09 08:30"))  # a worked Saturday, not the week's first
    weeklies = {m["To"]: m for _, m in mailbox.messages if "周报" in m["Subject"]}
    # Every lead department with an address gets one, whatever the route's mode.
    leads = {code for task in CATALOG.tasks for code in task.lead}
    assert len([m for _, m in mailbox.messages if "周报" in m["Subject"]]) == len(weeklies)
    assert set(weeklies) == {route[0]["to"][0] for code, route in ROUTES.items() if code in leads}
    weekly = weeklies["duban@tax.gulou.gov.cn"]
    assert weekly["Subject"] == "【督办周报】区税务局 2021年10月8日：牵头3项任务，1项红灯"
    body = weekly.get_content()
    assert "T09 提升纳税便利化水平（红灯，截止 2021年12月31日，催办）" in body
    assert "T10 " in body and "（黄灯，截止" in body


def completion(type_: str, task: str, when: datetime, **decision) -> dict:
    """The tracker's announcement of a task's "done" awaiting verification, or of its decision."""
    return tracker_event(type_, task, {"request_source": "/departments/tax-bureau", "request_id": "done-1",
                                       "requested_at": at("2021-09-30 16:00").isoformat(), "grace_until": "2021-10-15",
                                       "as_of": when.isoformat(), **decision}, when)


def escalations_gauge(name: str, level: int) -> float | None:
    return REGISTRY.get_sample_value(f"duban_notifier_escalations_{name}", {"level": str(level)})


async def test_an_item_awaiting_verification_is_neither_urged_in_the_digests_nor_counted_open(
        pool, feed, make_scheduler, smtp_server):
    scheduler = await make_scheduler(ROUTES, weekly_digest=True)
    _, mailbox = smtp_server
    await feed.send(light_changed("T09", "red", at("2021-09-29 10:00")),
                    light_changed("T10", "yellow", at("2021-09-29 10:00")))
    # The tax bureau reports T09 done: its escalation (催办) waits for the district office's verification.
    await feed.send(completion(CompletionAwaitingVerification.TYPE, "T09", at("2021-09-30 16:00")),
                    task_updated("T09", "done", 100, "green", at("2021-09-30 16:00")))
    assert (await escalation(pool, "T09"))["awaiting_verification_since"] == at("2021-09-30 16:00")

    # Friday 8 October, the week's first working day: both digests name T09 without urging it.
    await scheduler.run_once(pool, at("2021-10-08 08:30"))
    mails = {m["Subject"][:6]: m for _, m in mailbox.messages}
    daily, weekly = mails["【督办日报】"], mails["【督办周报】"]
    assert daily["Subject"] == "【督办日报】区税务局 2021年10月8日：1项督办事项，0件案件预警"
    assert "T10 " in daily.get_content() and "T09" not in daily.get_content()
    assert weekly["Subject"] == "【督办周报】区税务局 2021年10月8日：牵头3项任务，0项红灯"
    assert "任务1：T09 提升纳税便利化水平（绿灯）\n" in weekly.get_content()
    assert [escalations_gauge("open", level) for level in (1, 2, 3)] == [1, 0, 0]
    assert [escalations_gauge("awaiting_verification", level) for level in (1, 2, 3)] == [0, 1, 0]

    # Returned: T09 is urged again in the next day's digest, at the level its red clock has reached while
    # it waited (督办); the gauges count it open again.
    await feed.send(completion(CompletionReturned.TYPE, "T09", at("2021-10-08 11:00"), decided_by="督查室 李四",
                               reason="材料不全"),
                    task_updated("T09", "in_progress", 90, "red", at("2021-10-08 11:00")))
    await scheduler.run_once(pool, at("2021-10-09 08:30"))
    _, again = mailbox.messages[-1]
    assert again["Subject"] == "【督办日报】区税务局 2021年10月9日：2项督办事项，0件案件预警"
    assert "T09 提升纳税便利化水平（红灯，截止 2021年12月31日，督办）" in again.get_content()
    assert [escalations_gauge("open", level) for level in (1, 2, 3)] == [1, 0, 1]
    assert [escalations_gauge("awaiting_verification", level) for level in (1, 2, 3)] == [0, 0, 0]


async def test_a_webhook_gets_its_digests_as_the_published_contracts_say(pool, feed, make_scheduler, http_receiver):
    hook = [{"channel": "webhook", "url": f"{http_receiver.url}/tax", "name": "tax", "mode": "digest"}]
    scheduler = await make_scheduler({"tax-bureau": hook}, weekly_digest=True)
    await feed.send(light_changed("T09", "red", at("2021-09-29 10:00")))
    await warn(pool, scheduler, case_warning("TSR-9", 75, "2021-10-07 15:00"))
    await scheduler.run_once(pool, at("2021-10-08 08:30"))  # the week's first working day: both digests
    notices = {r.body["type"]: r.body for r in http_receiver.received}
    assert set(notices) == {"duban.notifier.digest-notice.v1", "duban.notifier.weekly-digest-notice.v1"}
    for notice in notices.values():
        assert notice_errors(notice) == [], notice["type"]
    daily = notices["duban.notifier.digest-notice.v1"]["data"]
    assert [i["item"] for i in daily["items"]] == ["T09"] and [w["case_id"] for w in daily["warnings"]] == ["TSR-9"]
    weekly = notices["duban.notifier.weekly-digest-notice.v1"]["data"]
    assert {t["item"]: t["light"] for t in weekly["tasks"]}["T09"] == "red"
