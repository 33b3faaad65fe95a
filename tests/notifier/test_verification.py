"""Escalation follows 办结销号 and 延期: a "done" awaiting verification pauses its item's escalation, a
return resumes it, a verification resolves it; an approved extension is the deadline the notices name.
Each step stays in the escalation's append-only history."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest

from duban.events.models import (
    CompletionAwaitingVerification,
    CompletionReturned,
    CompletionVerified,
    MilestoneExtensionDecided,
)
from tests.conftest import migrated_schema, schema_pool
from tests.notifier.conftest import at, deliveries, escalation, milestone_changed, tracker_event, write_routes
from tests.processes import ServiceProcess
from tests.tracker.conftest import department_event, progress
from tests.tracker.runtime import create_topics, produce, tracker_env, wait_for

pytestmark = pytest.mark.database

AWAITING_VERIFICATION, VERIFIED, RETURNED = (CompletionAwaitingVerification.TYPE, CompletionVerified.TYPE,
                                             CompletionReturned.TYPE)
EXTENSION_DECIDED = MilestoneExtensionDecided.TYPE

LEAD = "market-regulation"  # leads T07; its milestone T07-M1 was due 2021-06-30
ROUTES = {LEAD: [{"channel": "email", "to": ["duban@scjg.gulou.gov.cn"]}],
          "district-office": [{"channel": "email", "to": ["duban@gulou.gov.cn"]}]}


def verification_event(type_: str, when, **extra) -> dict:
    data = {"milestone_id": "T07-M1", "due": "2021-06-30", "request_source": f"/departments/{LEAD}",
            "request_id": "done-1", "requested_at": at("2021-09-01 09:00").isoformat(), "grace_until": "2021-09-08",
            "as_of": when.isoformat(), **extra}
    return tracker_event(type_, "T07", data, when)


async def history(client: httpx.AsyncClient, escalation_id: int, **params) -> list[dict]:
    answer = await client.get(f"/v1/escalations/{escalation_id}/history", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


async def test_awaiting_verification_pauses_a_return_resumes_and_a_verification_resolves(
        feed, pool, make_scheduler, smtp_server, api, tokens):
    scheduler, (_, mailbox), (client, clock) = await make_scheduler(ROUTES), smtp_server, api
    await feed.send(milestone_changed("T07-M1", "overdue", at("2021-08-31 09:00"), frm="open"))
    await scheduler.run_once(pool, at("2021-08-31 10:00"))
    assert [m["Subject"][:4] for _, m in mailbox.messages] == ["【催办】"]
    item = await escalation(pool, "T07-M1")

    # The department reports it done: the escalation waits; nothing goes out, a green does not resolve it.
    await feed.send(verification_event(AWAITING_VERIFICATION, at("2021-09-01 09:00"), deadline="2021-06-30"),
                    milestone_changed("T07-M1", "open", at("2021-09-01 09:00"), frm="overdue"))
    paused = await escalation(pool, "T07-M1")
    assert (paused["id"], paused["resolved_at"]) == (item["id"], None)
    assert paused["awaiting_verification_since"] == at("2021-09-01 09:00")
    for day in ("2021-09-06 10:00", "2021-09-08 10:00"):  # a new repeat window, and red for 5 working days
        await scheduler.run_once(pool, at(day))
    assert len(mailbox.messages) == 1 and (await escalation(pool, "T07-M1"))["level"] == 2

    # Returned: escalation resumes where the red clock has it (level 3, 督办, to the district office).
    await feed.send(verification_event(RETURNED, at("2021-09-08 11:00"), decided_by="督查室 李四", reason="材料不全"),
                    milestone_changed("T07-M1", "overdue", at("2021-09-08 11:00"), frm="open"))
    await scheduler.run_once(pool, at("2021-09-08 11:00"))
    resumed = await escalation(pool, "T07-M1")
    assert (resumed["awaiting_verification_since"], resumed["level"]) == (None, 3)
    assert [rcpt for rcpt, _ in mailbox.messages][-1] == ["duban@gulou.gov.cn"]

    # Done again and verified: resolved, and nothing more is sent.
    await feed.send(verification_event(AWAITING_VERIFICATION, at("2021-09-09 09:00"), request_id="done-2"),
                    verification_event(VERIFIED, at("2021-09-09 15:00"), request_id="done-2", decided_by="督查室 李四"),
                    milestone_changed("T07-M1", "done", at("2021-09-09 15:00"), frm="open"))
    sent = len(mailbox.messages)
    await scheduler.run_once(pool, at("2021-09-15 10:00"))
    assert (await escalation(pool, "T07-M1"))["resolved_at"] == at("2021-09-09 15:00")
    assert len(mailbox.messages) == sent

    clock.now = at("2021-09-15 10:00")
    entries = await history(client, item["id"])
    kinds = [e["kind"] for e in entries]
    assert kinds == ["opened", "delivery", "awaiting-verification", "returned", "level-changed", "delivery",
                     "awaiting-verification", "verified", "resolved"]
    returned = next(e for e in entries if e["kind"] == "returned")
    assert (returned["principal"], returned["detail"]["reason"]) == ("督查室 李四", "材料不全")
    first_delivery = next(e for e in entries if e["kind"] == "delivery")
    assert (first_delivery["level"], first_delivery["detail"]["outcome"], first_delivery["detail"]["attempt"]) == (
        2, "sent", 1)
    assert [e["kind"] for e in await history(client, item["id"], limit=2, offset=1)] == kinds[1:3]


async def test_an_item_red_again_after_the_grace_resumes_its_escalation(feed, pool, make_scheduler, smtp_server):
    scheduler, (_, mailbox) = await make_scheduler(ROUTES), smtp_server
    await feed.send(milestone_changed("T07-M1", "overdue", at("2021-08-31 09:00"), frm="open"),
                    verification_event(AWAITING_VERIFICATION, at("2021-09-01 09:00")),
                    milestone_changed("T07-M1", "open", at("2021-09-01 09:00"), frm="overdue"))
    await scheduler.run_once(pool, at("2021-09-01 10:00"))
    assert mailbox.messages == [] and (await deliveries(pool)) == []
    # The grace (through 2021-09-08) passed unverified: the tracker announces it overdue again.
    await feed.send(milestone_changed("T07-M1", "overdue", at("2021-09-09 00:00"), frm="open"))
    await scheduler.run_once(pool, at("2021-09-09 10:00"))
    row = await escalation(pool, "T07-M1")
    assert (row["awaiting_verification_since"], row["level"]) == (None, 3)
    assert [rcpt for rcpt, _ in mailbox.messages] == [["duban@gulou.gov.cn"]]
    kinds = await pool.fetch("SELECT kind FROM escalation_history WHERE escalation_id = $1 ORDER BY id", row["id"])
    assert [k["kind"] for k in kinds] == ["opened", "awaiting-verification", "resumed", "level-changed", "delivery"]


async def test_the_history_is_append_only_and_survives_later_updates(feed, pool, make_scheduler, smtp_server, api,
                                                                     tokens):
    scheduler, (client, clock) = await make_scheduler(ROUTES), api
    await feed.send(milestone_changed("T07-M1", "overdue", at("2021-09-24 09:00"), frm="open"))
    await scheduler.run_once(pool, at("2021-09-24 10:00"))
    item = await escalation(pool, "T07-M1")
    clock.now = at("2021-09-24 11:00")
    lead = tokens.headers(department=LEAD, subject="市场监管局 张科长")
    acknowledged = await client.post(f"/v1/escalations/{item['id']}/acknowledge", headers=lead,
                                     json={"until": at("2021-09-28 12:00").isoformat(), "note": "本周完成"})
    assert acknowledged.status_code == 200, acknowledged.text
    before = await history(client, item["id"])

    # The escalation's own row moves on: acknowledged again, raised, resolved.
    await client.post(f"/v1/escalations/{item['id']}/acknowledge", headers=lead,
                      json={"until": at("2021-09-27 18:00").isoformat(), "note": "改期"})
    await feed.send(milestone_changed("T07-M1", "done", at("2021-10-08 09:00"), frm="overdue"))
    after = await history(client, item["id"])
    assert after[:len(before)] == before, "what was written stays as it was written"
    ack = next(e for e in before if e["kind"] == "acknowledged")
    assert (ack["principal"], ack["detail"]["note"], ack["detail"]["until"]) == (
        "市场监管局 张科长", "本周完成", at("2021-09-28 12:00").isoformat())
    assert [e["kind"] for e in after[len(before):]] == ["acknowledged", "resolved"]
    async with pool.acquire() as conn:
        for statement in ("UPDATE escalation_history SET principal = 'someone else'", "DELETE FROM escalation_history"):
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute(statement)

    # A department reads its own escalations' history only; the viewer reads all.
    other = await client.get(f"/v1/escalations/{item['id']}/history", headers=tokens.headers(department="commerce"))
    assert (other.status_code, other.headers["content-type"]) == (403, "application/problem+json")
    assert (await client.get(f"/v1/escalations/{item['id']}/history", headers=tokens.headers("viewer"))).status_code == 200
    assert (await client.get("/v1/escalations/999999/history")).status_code == 404


async def test_an_approved_extension_is_the_deadline_the_notices_name(feed, pool, make_scheduler, smtp_server):
    scheduler, (_, mailbox) = await make_scheduler(ROUTES), smtp_server
    decided = {"extension_id": 1, "milestone_id": "T07-M1", "original_due": "2021-06-30", "requested_due": "2021-10-29",
               "decision": "approved", "due": "2021-10-29", "reason": "同意", "decided_by": "督查室 李四"}
    # Overdue by the plan's date, then extended: the open escalation names the new date from then on.
    await feed.send(milestone_changed("T07-M1", "overdue", at("2021-09-01 09:00"), frm="open"),
                    tracker_event(EXTENSION_DECIDED, "T07", decided | {"as_of": at("2021-09-01 10:00").isoformat()},
                                  at("2021-09-01 10:00")))
    assert (await escalation(pool, "T07-M1"))["deadline"].isoformat() == "2021-10-29"
    await feed.send(milestone_changed("T07-M1", "open", at("2021-09-01 10:00"), frm="overdue"))
    # Past the extended date: a new escalation, whose notice names it.
    await feed.send(milestone_changed("T07-M1", "overdue", at("2021-11-01 09:00"), frm="open"))
    await scheduler.run_once(pool, at("2021-11-01 10:00"))
    [(_, mail)] = mailbox.messages
    assert "截止日期：2021年10月29日" in mail.get_content()
    [row] = await deliveries(pool, item="T07-M1")
    assert row["notice"] and "2021-10-29" in row["notice"]


async def test_through_kafka_a_verified_completion_resolves_the_escalation(
        unique_topics, kafka_bootstrap, database_url, tmp_path, smtp_server, tokens):
    """Real tracker and notifier processes on the real broker: a red milestone's escalation waits while
    its completion awaits verification, and the district office's verification resolves it."""
    settings = unique_topics.model_copy(update={"kafka_bootstrap": kafka_bootstrap})
    await create_topics(settings)
    controller, mailbox = smtp_server
    routes = write_routes(tmp_path, ROUTES)
    async with migrated_schema(database_url, "tracker") as tracker_schema, \
            migrated_schema(database_url, "notifier") as notifier_schema:
        def process(module: str, schema: str, **extra: str) -> ServiceProcess:
            env = tracker_env(settings, database_url=database_url, schema=schema, group=f"{module}-{schema}",
                              data_dir=tmp_path) | extra
            return ServiceProcess(env, tmp_path / f"{schema}.log", module=module).start()

        tracker = process("services.tracker", tracker_schema)
        notifier = process("services.notifier", notifier_schema, DUBAN_NOTIFIER_ROUTES=str(routes),
                           DUBAN_SMTP_HOST=controller.hostname, DUBAN_SMTP_PORT=str(controller.port),
                           DUBAN_SCHEDULER_INTERVAL_S="0.5")
        try:
            async with schema_pool(database_url, notifier_schema) as pool:
                async def state() -> asyncpg.Record | None:
                    return await pool.fetchrow("SELECT id, resolved_at, awaiting_verification_since FROM escalations"
                                               " WHERE item = 'T07-M1' ORDER BY id DESC LIMIT 1")

                await produce(settings, [progress("T07", LEAD, "2021-08-20 10:00", "in_progress", 60)])
                opened = await wait_for(state, 90, "the red milestone's escalation", tracker, notifier)
                await produce(settings, [department_event("duban.task.milestone-completed.v1", LEAD, "T07",
                                                          "2021-08-31 10:00", {"milestone_id": "T07-M1"},
                                                          str(uuid.uuid4()))])

                async def paused():
                    row = await state()
                    return row if row["awaiting_verification_since"] else None
                await wait_for(paused, 60, "the escalation paused while awaiting verification", tracker, notifier)

                async with httpx.AsyncClient(base_url=tracker.url, headers=tokens.headers(subject="督查室 李四")) as office:
                    verified = await office.post("/v1/tasks/T07/milestones/T07-M1/verification",
                                                 json={"outcome": "verified"})
                assert verified.status_code == 200, verified.text

                async def resolved():
                    row = await state()
                    return row if row["resolved_at"] else None
                done = await wait_for(resolved, 60, "the escalation resolved by the verification", tracker, notifier)
                assert done["id"] == opened["id"]
                kinds = [r["kind"] for r in await pool.fetch(
                    "SELECT kind FROM escalation_history WHERE escalation_id = $1 ORDER BY id", opened["id"])]
                assert kinds[0] == "opened" and kinds[-3:] == ["awaiting-verification", "verified", "resolved"], kinds
                principal = await pool.fetchval("SELECT principal FROM escalation_history WHERE kind = 'verified'")
                assert principal == "督查室 李四"
        finally:
            assert notifier.stop() and tracker.stop()
    assert all(m["Subject"].startswith("【催办】T07") for _, m in mailbox.messages)
