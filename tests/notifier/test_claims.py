"""Sending with no transaction open (decision 015): a due notice is claimed in a short transaction, sent
with none open while other replicas leave it alone, and its outcome recorded only while the claim is
still the sender's; a claim whose holder died is taken over once its lease has run out."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from services.notifier import store
from services.notifier.channels.webhook import delivery_id
from services.notifier.scheduler import delivery_key
from tests.notifier.conftest import CATALOG, at, deliveries, escalation, light_changed, task_updated

pytestmark = pytest.mark.database

T0 = at("2021-09-27 09:00")


def units_webhook(url: str) -> dict:
    """T17's responsible units share one webhook: its level-1 notice is one delivery."""
    hook = [{"channel": "webhook", "url": f"{url}/hooks/units", "name": "units"}]
    return {"industry-it": hook, "health": hook}


async def one_notice_planned(feed, pool, scheduler) -> None:
    await feed.send(light_changed("T17", "yellow", T0))
    await scheduler.evaluate_due(pool, T0)
    assert len(await deliveries(pool, status="pending")) == 1


async def taken(receiver, count: int = 1) -> None:
    """Until the receiver has `count` requests (it may be holding their senders)."""
    while len(receiver.received) < count:
        await asyncio.sleep(0.01)


async def in_transaction(pool, schema: str) -> list[str]:
    """The states of the notifier's connections that are inside a transaction, other than this query's."""
    async with pool.acquire() as conn:
        return await conn.fetchval(
            "SELECT coalesce(array_agg(state), '{}') FROM pg_stat_activity WHERE application_name = $1"
            " AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()", f"duban-{schema}")


async def test_a_held_send_keeps_no_transaction_open_and_another_replica_leaves_it_alone(
        feed, pool, schema, make_scheduler, http_receiver):
    first, second = await make_scheduler(units_webhook(http_receiver.url)), await make_scheduler(
        units_webhook(http_receiver.url))
    await one_notice_planned(feed, pool, first)
    http_receiver.hold()
    sending = asyncio.create_task(first.deliver_due(pool, T0))
    await taken(http_receiver)

    # The webhook has the request and keeps the sender waiting: no transaction is open, no connection taken.
    assert await in_transaction(pool, schema) == []
    assert pool.get_idle_size() == pool.get_size()
    [claimed] = await deliveries(pool)
    # The attempt counts from its claim, before any answer.
    assert claimed["status"] == "pending" and claimed["claim"] is not None and claimed["attempts"] == 1
    # Another replica's round passes over the notice being sent.
    assert await second.deliver_due(pool, T0) == 0
    assert len(http_receiver.received) == 1

    http_receiver.release()
    assert await sending == 1
    [sent] = await deliveries(pool)
    assert (sent["status"], sent["attempts"], sent["claim"], sent["claimed_until"]) == ("sent", 1, None, None)
    assert await second.deliver_due(pool, T0) == 0
    assert len(http_receiver.received) == 1


async def test_a_claim_whose_holder_died_is_sent_by_another_once_its_lease_runs_out(
        feed, pool, make_scheduler, http_receiver):
    scheduler = await make_scheduler(units_webhook(http_receiver.url))
    await one_notice_planned(feed, pool, scheduler)
    # A replica claims the notice the way the scheduler does, then dies: it never sends nor records.
    async with pool.acquire() as conn, conn.transaction():
        row = await store.due_delivery(conn, T0)
        dead_holders_claim = await store.claim(conn, row["id"], scheduler.lease)

    assert await scheduler.deliver_due(pool, T0) == 0
    assert not http_receiver.received

    # The lease runs out (it is real time; moved into the past rather than waited for).
    async with pool.acquire() as conn:
        await conn.execute("UPDATE deliveries SET claimed_until = clock_timestamp() - interval '1 second'"
                           " WHERE id = $1", row["id"])
    http_receiver.hold()
    sending = asyncio.create_task(scheduler.deliver_due(pool, T0))
    await taken(http_receiver)
    # Had the first holder been slow rather than dead, what it learnt now is no longer its to record.
    async with pool.acquire() as conn, conn.transaction():
        assert not await store.record_attempt(conn, row["id"], dead_holders_claim, status="dead", error="late",
                                              not_before=None, now=T0)
    http_receiver.release()
    assert await sending == 1

    [notice] = http_receiver.received
    assert notice.headers["webhook-id"] == notice.body["id"] == delivery_id(delivery_key(row))
    [sent] = await deliveries(pool)
    # Two attempts: the dead holder's, counted when it claimed, and the one that went out.
    assert (sent["status"], sent["attempts"], sent["last_error"], sent["claim"]) == ("sent", 2, None, None)


async def claim_and_die(pool, scheduler) -> None:
    """A replica claims the due notice the way the scheduler does and dies; its lease then runs out."""
    async with pool.acquire() as conn, conn.transaction():
        row = await store.due_delivery(conn, T0)
        await store.claim(conn, row["id"], scheduler.lease)
    async with pool.acquire() as conn:
        await conn.execute("UPDATE deliveries SET claimed_until = clock_timestamp() - interval '1 second'"
                           " WHERE id = $1", row["id"])


async def test_a_notice_whose_sends_never_finish_is_given_up_after_the_most_attempts(
        feed, pool, make_scheduler, http_receiver):
    # Say the notice stops every replica that sends it: each claim counts, and no replica takes it up forever.
    scheduler = await make_scheduler(units_webhook(http_receiver.url), delivery_max_attempts=2)
    await one_notice_planned(feed, pool, scheduler)
    await claim_and_die(pool, scheduler)
    await claim_and_die(pool, scheduler)

    assert await scheduler.deliver_due(pool, T0) == 1
    [given_up] = await deliveries(pool)
    assert (given_up["status"], given_up["attempts"], given_up["last_error"]) == (
        "dead", 2, "2 sends started and none finished")
    assert not http_receiver.received


async def test_a_notice_that_cannot_be_read_is_given_up_and_the_next_one_still_goes(
        feed, pool, make_scheduler, http_receiver):
    hook = [{"channel": "webhook", "url": f"{http_receiver.url}/hooks/all", "name": "all"}]
    scheduler = await make_scheduler({d.code: hook for d in CATALOG.departments})
    await feed.send(light_changed("T01", "red", T0), light_changed("T02", "red", T0))
    await scheduler.evaluate_due(pool, T0)
    first, _ = await deliveries(pool, status="pending")
    async with pool.acquire() as conn:  # a notice stored in a shape this notifier no longer reads
        await conn.execute("UPDATE deliveries SET notice = '{\"headline\": \"T01\"}' WHERE id = $1", first["id"])

    assert await scheduler.deliver_due(pool, T0) == 2
    unreadable, sent = await deliveries(pool)
    assert unreadable["status"] == "dead" and unreadable["attempts"] == 0
    assert unreadable["last_error"].startswith("the stored notice cannot be read: TypeError")
    assert sent["status"] == "sent" and len(http_receiver.received) == 1


async def test_a_robot_message_being_sent_counts_against_the_robots_minute(feed, pool, make_scheduler, http_receiver):
    robot = [{"channel": "wecom", "webhook": f"{http_receiver.url}/wecom/all", "name": "all"}]
    routes = {d.code: robot for d in CATALOG.departments}
    first, second = (await make_scheduler(routes, robot_messages_per_minute=1),
                     await make_scheduler(routes, robot_messages_per_minute=1))
    await feed.send(light_changed("T01", "red", T0), light_changed("T02", "red", T0))
    await first.evaluate_due(pool, T0)
    http_receiver.hold()
    sending = asyncio.create_task(first.deliver_due(pool, T0))
    await taken(http_receiver)

    # The other notice waits for the minute of the one still being sent.
    assert await second.deliver_due(pool, T0) == 1
    [waiting] = [d for d in await deliveries(pool) if d["claim"] is None]
    assert (waiting["status"], waiting["not_before"]) == ("pending", T0 + timedelta(minutes=1))
    http_receiver.release()
    assert await sending == 1
    assert len(http_receiver.received) == 1

    await second.deliver_due(pool, T0 + timedelta(minutes=1))
    assert len(http_receiver.received) == 2
    assert {d["status"] for d in await deliveries(pool)} == {"sent"}


async def test_a_notice_resolved_while_being_sent_is_recorded_as_sent(feed, pool, make_scheduler, http_receiver):
    scheduler = await make_scheduler(units_webhook(http_receiver.url))
    await one_notice_planned(feed, pool, scheduler)
    http_receiver.hold()
    sending = asyncio.create_task(scheduler.deliver_due(pool, T0))
    await taken(http_receiver)

    # Resolving cancels what is still queued; the notice on its way is left to its sender, without waiting for it.
    await feed.send(task_updated("T17", "done", 100, "green", T0 + timedelta(minutes=5)))
    assert (await escalation(pool, "T17"))["resolved_at"] == T0 + timedelta(minutes=5)
    http_receiver.release()
    assert await sending == 1
    [sent] = await deliveries(pool)
    assert (sent["status"], sent["attempts"]) == ("sent", 1)


async def test_a_send_slower_than_the_timeout_as_a_whole_is_cut_and_retried(feed, pool, make_scheduler, http_receiver):
    # Each byte comes well within the HTTP client's read timeout; the whole answer does not, so the claim's
    # lease (twice the timeout) still holds when the send is given up.
    scheduler = await make_scheduler(units_webhook(http_receiver.url), delivery_timeout_s=1.0,
                                     delivery_retry_initial_s=10)
    await one_notice_planned(feed, pool, scheduler)
    http_receiver.default, http_receiver.drip_s = (200, {"padding": "." * 200}), 0.05
    assert await scheduler.deliver_due(pool, T0) == 1
    [row] = await deliveries(pool)
    assert (row["status"], row["attempts"], row["not_before"], row["claim"]) == (
        "pending", 1, T0 + timedelta(seconds=10), None)
    assert row["last_error"] == "not sent within 1 s"

    http_receiver.drip_s = None
    await scheduler.deliver_due(pool, T0 + timedelta(seconds=10))
    [row] = await deliveries(pool)
    assert (row["status"], row["attempts"], len(http_receiver.received)) == ("sent", 2, 2)
