"""The scheduler against real receivers: the ladder over National Day 2021, idempotency across
runs and replicas, office hours, the robots' rate limit, retries and dead notices."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from tests.notifier.conftest import (
    CATALOG,
    at,
    deliveries,
    escalation,
    light_changed,
    task_updated,
)

pytestmark = pytest.mark.database

SECRET = "SEC0123456789abcdef"


def routes_for(url: str) -> dict:
    units = {"channel": "wecom", "webhook": f"{url}/wecom/units", "name": "units"}
    return {
        "industry-it": [units], "health": [units],
        "digital-office": [{"channel": "dingtalk", "webhook": f"{url}/dingtalk/lead?access_token=t0k", "secret": SECRET},
                           {"channel": "email", "to": ["head@digital.gulou.gov.cn"], "levels": [2]}],
        "district-office": [{"channel": "webhook", "url": f"{url}/hooks/office", "name": "office"},
                            {"channel": "email", "to": ["duban@gulou.gov.cn"]}],
    }


async def test_the_ladder_over_national_day(feed, pool, make_scheduler, http_receiver, smtp_server, api, tokens):
    scheduler, (_, mailbox), (client, clock) = await make_scheduler(routes_for(http_receiver.url)), smtp_server, api

    # Friday before National Day, the task turns yellow: level 1 to its responsible units at once,
    # one notice to the group robot they share.
    await feed.send(light_changed("T17", "yellow", at("2021-09-24 10:00"), frm="green", reason="deadline_near"))
    await scheduler.run_once(pool, at("2021-09-24 10:00"))
    [reminder] = http_receiver.bodies("/wecom/units")
    assert reminder["msgtype"] == "markdown"
    content = reminder["markdown"]["content"]
    for words in ("【提醒】", "T17", "黄灯", "2021年12月31日", "区工信局", "区卫健局", "第一级 提醒"):
        assert words in content, words

    # Red on the worked Sunday: level 2 to the lead department (DingTalk, signed; the head's mailbox).
    await feed.send(light_changed("T17", "red", at("2021-09-26 09:00"), frm="yellow"))
    await scheduler.run_once(pool, at("2021-09-26 09:00"))
    [urge] = [r for r in http_receiver.received if r.path == "/dingtalk/lead"]
    assert urge.body["msgtype"] == "markdown" and urge.body["markdown"]["title"].startswith("【催办】T17")
    assert "区数字办" in urge.body["markdown"]["text"] and "红灯" in urge.body["markdown"]["text"]
    timestamp, sign = urge.query["timestamp"][0], urge.query["sign"][0]
    expected = base64.b64encode(hmac.new(SECRET.encode(), f"{timestamp}\n{SECRET}".encode(), hashlib.sha256).digest())
    assert sign == expected.decode() and urge.query["access_token"] == ["t0k"]
    [(rcpt, mail)] = mailbox.messages
    assert rcpt == ["head@digital.gulou.gov.cn"] and mail["Subject"].startswith("【催办】T17")
    assert "截止日期：2021年12月31日" in mail.get_content() and mail["Message-ID"]

    # The lead acknowledges until Wednesday noon: no level 3 after 3 silent working days.
    item = await escalation(pool, "T17")
    clock.now = at("2021-09-26 10:00")
    answer = await client.post(f"/v1/escalations/{item['id']}/acknowledge",
                               json={"until": at("2021-09-29 12:00").isoformat(), "note": "已部署"},
                               headers=tokens.headers(department="digital-office", subject="区数字办 王主任"))
    assert answer.status_code == 200 and answer.json()["acknowledged_by"] == "区数字办 王主任"
    day = at("2021-09-27 09:00")
    while day < at("2021-10-08 00:00"):
        await scheduler.run_once(pool, day)
        day += timedelta(days=1)
    assert (await escalation(pool, "T17"))["level"] == 2
    assert not http_receiver.bodies("/hooks/office")

    # Red for 5 working days (27, 28, 29, 30 September, 8 October): level 3 to the district office.
    await scheduler.run_once(pool, at("2021-10-08 08:00"))
    assert (await escalation(pool, "T17"))["level"] == 3
    [supervise] = http_receiver.received[-1:]
    assert supervise.path == "/hooks/office" and supervise.headers["Content-Type"] == "application/cloudevents+json"
    assert supervise.body["type"] == "duban.notifier.escalation-notice.v1" and supervise.body["subject"] == "T17"
    assert supervise.body["data"]["level"] == 3 and supervise.body["data"]["addressees"] == ["区政府办公室"]
    assert [m["To"] for _, m in mailbox.messages] == ["head@digital.gulou.gov.cn", "duban@gulou.gov.cn"]

    # Repeated 5 working days later (9 (worked Saturday), 11, 12, 13, 14 October), not before.
    await scheduler.run_once(pool, at("2021-10-13 17:00"))
    assert len(http_receiver.bodies("/hooks/office")) == 1
    await scheduler.run_once(pool, at("2021-10-14 09:00"))
    assert len(http_receiver.bodies("/hooks/office")) == 2

    # Done: resolved, no more repeats.
    await feed.send(task_updated("T17", "done", 100, "green", at("2021-10-15 10:00")))
    for day in ("2021-10-21 09:00", "2021-10-28 09:00"):
        await scheduler.run_once(pool, at(day))
    assert len(http_receiver.bodies("/hooks/office")) == 2
    assert (await escalation(pool, "T17"))["resolved_at"] == at("2021-10-15 10:00")
    sent = await deliveries(pool, status="sent")
    assert [(d["level"], d["channel"]) for d in sent] == [
        (1, "wecom"), (2, "dingtalk"), (2, "email"), (3, "webhook"), (3, "email"), (3, "webhook"), (3, "email")]


async def test_running_twice_or_on_two_replicas_sends_once(feed, pool, make_scheduler, http_receiver):
    routes = routes_for(http_receiver.url)
    first, second = await make_scheduler(routes), await make_scheduler(routes)
    await feed.send(light_changed("T17", "red", at("2021-09-27 09:00")))
    await asyncio.gather(first.run_once(pool, at("2021-09-27 09:00")), second.run_once(pool, at("2021-09-27 09:00")))
    await first.run_once(pool, at("2021-09-27 09:00"))
    await second.run_once(pool, at("2021-09-27 09:01"))
    assert len(http_receiver.bodies("/dingtalk/lead")) == 1
    assert len(await deliveries(pool, channel="dingtalk")) == 1


async def test_a_red_at_night_is_delivered_when_the_office_opens(feed, pool, make_scheduler, http_receiver):
    scheduler = await make_scheduler(routes_for(http_receiver.url))
    await feed.send(light_changed("T17", "red", at("2021-09-30 20:00")))
    await scheduler.run_once(pool, at("2021-09-30 20:00"))
    [queued] = await deliveries(pool, channel="dingtalk")
    assert (queued["status"], queued["not_before"]) == ("pending", at("2021-10-08 08:00"))  # after the holiday
    await scheduler.run_once(pool, at("2021-10-07 23:00"))
    assert not http_receiver.received
    await scheduler.run_once(pool, at("2021-10-08 08:00"))
    assert len(http_receiver.bodies("/dingtalk/lead")) == 1


async def test_a_robot_gets_at_most_20_messages_a_minute(feed, pool, make_scheduler, http_receiver):
    shared = [{"channel": "wecom", "webhook": f"{http_receiver.url}/wecom/all", "name": "all"}]
    scheduler = await make_scheduler({d.code: shared for d in CATALOG.departments})
    t0 = at("2021-09-27 09:00")
    await feed.send(*(light_changed(f"T{n:02d}", "red", t0) for n in range(1, 26)))
    await scheduler.run_once(pool, t0)
    assert len(http_receiver.received) == 20
    await scheduler.run_once(pool, t0 + timedelta(seconds=59))
    assert len(http_receiver.received) == 20
    await scheduler.run_once(pool, t0 + timedelta(seconds=60))
    assert len(http_receiver.received) == 25


async def test_a_failing_robot_is_retried_with_backoff_until_it_answers(feed, pool, make_scheduler, http_receiver):
    scheduler = await make_scheduler(routes_for(http_receiver.url), delivery_retry_initial_s=10)
    http_receiver.script = [(502, {}), (200, {"errcode": 45009, "errmsg": "api freq out of limit"})]
    t0 = at("2021-09-27 09:00")
    await feed.send(light_changed("T17", "yellow", t0))
    await scheduler.run_once(pool, t0)
    [row] = await deliveries(pool)
    assert (row["status"], row["attempts"], row["not_before"]) == ("pending", 1, t0 + timedelta(seconds=10))
    assert "HTTP 502" in row["last_error"]
    await scheduler.run_once(pool, t0 + timedelta(seconds=5))
    assert len(http_receiver.received) == 1
    await scheduler.run_once(pool, t0 + timedelta(seconds=10))
    [row] = await deliveries(pool)
    assert (row["attempts"], row["not_before"]) == (2, t0 + timedelta(seconds=30)) and "45009" in row["last_error"]
    await scheduler.run_once(pool, t0 + timedelta(seconds=30))
    [row] = await deliveries(pool)
    assert (row["status"], row["attempts"], len(http_receiver.received)) == ("sent", 3, 3)


async def test_a_notice_is_dead_after_the_last_attempt_and_shows_in_the_api(feed, pool, make_scheduler, http_receiver, api):
    scheduler = await make_scheduler(routes_for(http_receiver.url), delivery_retry_initial_s=1, delivery_max_attempts=3)
    http_receiver.default = (503, {"error": "unavailable"})
    t0 = at("2021-09-27 09:00")
    await feed.send(light_changed("T17", "yellow", t0))
    for seconds in (0, 1, 3, 10):
        await scheduler.run_once(pool, t0 + timedelta(seconds=seconds))
    [row] = await deliveries(pool)
    assert (row["status"], row["attempts"], len(http_receiver.received)) == ("dead", 3, 3)
    assert REGISTRY.get_sample_value("duban_notifier_dead_deliveries", {"channel": "wecom"}) == 1
    client, _ = api
    [dead] = (await client.get("/v1/deliveries", params={"status": "dead"})).json()["items"]
    assert "HTTP 503" in dead["last_error"] and dead["item"] == "T17"


async def test_a_refused_webhook_is_dead_at_once(feed, pool, make_scheduler, http_receiver):
    scheduler = await make_scheduler(routes_for(http_receiver.url))
    http_receiver.default = (200, {"errcode": 93000, "errmsg": "invalid webhook url"})
    await feed.send(light_changed("T17", "yellow", at("2021-09-27 09:00")))
    await scheduler.run_once(pool, at("2021-09-27 09:00"))
    [row] = await deliveries(pool)
    assert (row["status"], row["attempts"]) == ("dead", 1) and "93000" in row["last_error"]


async def test_a_department_without_an_address_is_counted_not_fatal(feed, pool, make_scheduler, http_receiver):
    scheduler = await make_scheduler({"digital-office": routes_for(http_receiver.url)["digital-office"]})
    before = REGISTRY.get_sample_value("duban_notifier_unrouted_total", {"department": "health", "level": "1"}) or 0
    await feed.send(light_changed("T17", "yellow", at("2021-09-27 09:00")))
    await scheduler.run_once(pool, at("2021-09-27 09:00"))
    assert REGISTRY.get_sample_value("duban_notifier_unrouted_total", {"department": "health", "level": "1"}) == before + 1
    assert not await deliveries(pool)
    assert REGISTRY.get_sample_value("duban_notifier_escalations_open", {"level": "1"}) == 1


async def test_resolution_cancels_notices_still_queued(feed, pool, make_scheduler, http_receiver):
    scheduler = await make_scheduler(routes_for(http_receiver.url))
    await feed.send(light_changed("T17", "red", at("2021-09-30 20:00")))
    await scheduler.run_once(pool, at("2021-09-30 20:00"))
    await feed.send(light_changed("T17", "green", at("2021-10-02 10:00"), frm="red", reason="done"))
    await scheduler.run_once(pool, at("2021-10-08 08:00"))
    assert not http_receiver.received
    assert {d["status"] for d in await deliveries(pool)} == {"cancelled"}
