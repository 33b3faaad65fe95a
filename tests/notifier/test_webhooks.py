"""Webhooks a receiver can trust and de-duplicate: signed per Standard Webhooks (verified with the
`standardwebhooks` package, as a receiver would), the same webhook-id on every retry, payloads that
hold to their published contract; e-mails with a Message-ID stable across retries."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from jsonschema import Draft202012Validator
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.notifier.conftest import at, deliveries, light_changed
from tests.notifier.notices import NOTICES_DIR, notice_errors, notice_validator

pytestmark = pytest.mark.database

SECRET = "whsec_" + base64.b64encode(b"duban-test-signing-key-0123456789").decode()


def office_hook(url: str, **extra) -> dict:
    return {"district-office": [{"channel": "webhook", "url": f"{url}/hooks/office", "name": "office", **extra}],
            "digital-office": [{"channel": "email", "to": ["head@digital.gulou.gov.cn"]}]}


async def test_a_signed_notice_verifies_and_keeps_its_id_across_retries(feed, pool, make_scheduler, http_receiver,
                                                                         smtp_server):
    scheduler = await make_scheduler(office_hook(http_receiver.url, secret=SECRET), delivery_retry_initial_s=1,
                                     escalation_unacknowledged_days_to_top=1)
    _, mailbox = smtp_server
    http_receiver.script = [(503, {"error": "busy"})]
    # Red on Monday, level 3 (督办) to the district office's webhook on Tuesday.
    await feed.send(light_changed("T17", "red", at("2021-09-27 09:00")))
    await scheduler.run_once(pool, at("2021-09-27 09:00"))
    t0 = at("2021-09-28 09:00")
    for seconds in (0, 2):
        await scheduler.run_once(pool, t0 + timedelta(seconds=seconds))
    first, second = http_receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == second.body["id"]
    for attempt in (first, second):
        # The receiver's side, exactly as its library does it; it answers with the parsed payload.
        assert Webhook(SECRET).verify(attempt.raw, attempt.headers) == attempt.body
        assert attempt.headers["Content-Type"] == "application/cloudevents+json"
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"someone-else's-key-0123456789ab").decode()).verify(second.raw, second.headers)
    tampered = second.raw.replace(b'"level":3', b'"level":1')
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, second.headers)

    notice = second.body
    assert notice_errors(notice) == []
    assert notice["type"] == "duban.notifier.escalation-notice.v1" and notice["subject"] == "T17"
    assert notice["data"]["level"] == 3 and notice["data"]["title"].startswith("【督办】T17")
    [row] = await deliveries(pool, channel="webhook")
    assert (row["status"], row["attempts"]) == ("sent", 2)

    # The lead's e-mail (level 2, Monday) carries a Message-ID of its own delivery.
    [(_, mail)] = mailbox.messages
    assert mail["Message-ID"].endswith("@gulou.gov.cn>") and mail["Message-ID"] != f"<{notice['id']}@gulou.gov.cn>"


async def test_an_unsigned_route_still_names_its_delivery(feed, pool, make_scheduler, http_receiver):
    scheduler = await make_scheduler(office_hook(http_receiver.url), escalation_unacknowledged_days_to_top=1)
    await feed.send(light_changed("T17", "red", at("2021-09-27 09:00")))
    await scheduler.run_once(pool, at("2021-09-27 09:00"))
    await scheduler.run_once(pool, at("2021-09-28 09:00"))
    [hook] = http_receiver.received
    assert "webhook-signature" not in hook.headers and hook.headers["webhook-id"] == hook.body["id"]
    assert notice_errors(hook.body) == []


def test_the_notice_contracts_hold_their_examples_and_refuse_their_counter_examples():
    for path in sorted(NOTICES_DIR.glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
        assert schema["additionalProperties"] is False and schema["properties"]["data"]["additionalProperties"] is False
        for example in schema["examples"]:
            assert notice_errors(example) == [], path.name
        for case in json.loads((NOTICES_DIR / "invalid" / path.name).read_text(encoding="utf-8")):
            paths = {"/" + "/".join(map(str, e.absolute_path)) for e in notice_validator(path.stem).iter_errors(case["event"])}
            assert paths == set(case["expected_errors"]), case["comment"]


async def test_a_retried_mail_keeps_its_message_id(feed, pool, make_scheduler, smtp_server):
    scheduler = await make_scheduler(office_hook("http://127.0.0.1:9"), delivery_retry_initial_s=1)
    _, mailbox = smtp_server
    mailbox.refusals = ["451 4.3.0 try again later"]
    await feed.send(light_changed("T17", "red", at("2021-09-27 09:00")))
    for seconds in (0, 2):
        await scheduler.run_once(pool, at("2021-09-27 09:00") + timedelta(seconds=seconds))
    [refused], [(_, accepted)] = mailbox.refused, mailbox.messages
    assert refused["Message-ID"] == accepted["Message-ID"] and accepted["Subject"].startswith("【催办】T17")
    [row] = await deliveries(pool, channel="email")
    assert (row["status"], row["attempts"]) == ("sent", 2)
