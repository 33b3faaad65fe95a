"""Nothing accepted is lost or applied twice under faults, with real processes: while department
systems post to intake over HTTP, the tracker is SIGKILLed and restarted, the network to the
broker stalls for 10 s, PostgreSQL restarts, and one of two notifiers is SIGKILLed mid-send.
bench/faults.py runs the same scenarios for 60 s each and prints the table."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import Counter

import pytest

from services.notifier.channels.webhook import delivery_id
from services.notifier.scheduler import delivery_key
from tests.faults.system import Receiver, System, connect, run_scenario, scenarios, settled_notices

SCENARIOS = ("tracker SIGKILL", "broker stall 10 s", "PostgreSQL restart", "notifier SIGKILL")
SECONDS, FAULT_AT_S = 13.0, 2.0
TAG = uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
async def system(tmp_path_factory):
    system = System(tmp_path_factory.mktemp("faults"))
    try:
        yield await system.start()
    finally:
        system.stop()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", SCENARIOS)
async def test_every_accepted_event_applies_once(system, name):
    scenario = next(s for s in scenarios(system, TAG) if s.name == name)
    outcome = await run_scenario(system, scenario, seconds=SECONDS, fault_at_s=FAULT_AT_S)
    logs = "\n".join(f"--- {s.name}\n{s.tail(2000)}" for s in system.services.values())

    assert outcome.refused == []
    assert outcome.accepted == outcome.posted == SECONDS * 50, logs  # every event was eventually accepted (202)
    assert (outcome.applied, outcome.lost, outcome.twice) == (outcome.accepted, 0, 0), logs
    assert not math.isnan(outcome.recovery_s), logs
    if scenario.notifier_schema:
        assert len(system.mailbox.killed) == 1
        assert outcome.notices > 0
        assert (outcome.duplicate_notices, outcome.unsent_notices) == (0, 0), logs


async def one_of_two_notifiers_killed_once_delivered(system: System, schema: str, receiver: Receiver) -> str:
    """Two notifiers on a fresh schema, held at the receivers until both run; then the first whose
    notice `receiver` has taken whole is SIGKILLed before the answer. Returns that notice's id."""
    killed_before = len(receiver.killed)
    system.mailbox.hold()
    system.webhooks.hold()
    await system.start_notifiers(2, schema)
    receiver.kill_next_sender(after_data=True)
    system.mailbox.release()
    system.webhooks.release()
    while len(receiver.killed) == killed_before:
        await asyncio.sleep(0.05)
    return receiver.killed[-1][1]


@pytest.mark.timeout(120)
async def test_a_notifier_killed_after_the_server_took_its_mail_sends_it_again_under_the_same_message_id(system):
    """The one window no notifier can close: the SMTP server has the whole message, the sender dies
    before the server's answer arrives (RFC 1047, "Duplicate messages and SMTP").
    The other notifier sends that notice again, and it carries the same Message-ID, so mail systems
    can fold the two; every other notice arrives once."""
    schema = f"notifier_{TAG}_data"
    system.stop_notifiers()
    received_before = len(system.mailbox.message_ids)
    killed_message_id = await one_of_two_notifiers_killed_once_delivered(system, schema, system.mailbox)

    conn = await connect(system.database_url)
    try:
        assert await settled_notices(conn, schema, time.monotonic() + 60) == 0
        sent = await conn.fetchval(f'SELECT count(*) FROM "{schema}".deliveries WHERE status = $1 AND channel = $2',
                                   "sent", "email")
    finally:
        await conn.close()
    received = system.mailbox.message_ids[received_before:]
    assert sent > 0 and len(set(received)) == sent
    assert Counter(received) - Counter(set(received)) == Counter([killed_message_id])


@pytest.mark.timeout(120)
async def test_every_notice_reaches_its_mail_and_webhook_receiver_once_and_a_resend_keeps_its_webhook_id(system):
    """Two notifiers on a fresh schema read the tracker's changes from the broker: every red task's and
    milestone's notice goes by e-mail and by webhook. One notifier is SIGKILLed after the webhook
    receiver took a request and before it answered: the other sends that notice again with the same
    webhook-id (and CloudEvent id), which is how a receiver drops it; nothing is lost, nothing else twice."""
    schema = f"notifier_{TAG}_hook"
    system.stop_notifiers()
    mails_before, hooks_before = len(system.mailbox.message_ids), len(system.webhooks.message_ids)
    killed_id = await one_of_two_notifiers_killed_once_delivered(system, schema, system.webhooks)

    conn = await connect(system.database_url)
    try:
        assert await settled_notices(conn, schema, time.monotonic() + 60) == 0
        sent = await conn.fetch(f'SELECT kind, item, level, window_start, channel, recipient FROM "{schema}".deliveries')
    finally:
        await conn.close()
    expected = {channel: Counter(delivery_id(delivery_key(row)) for row in sent if row["channel"] == channel)
                for channel in ("email", "webhook")}
    items = {row["item"] for row in sent if row["kind"] == "escalation"}
    assert {item.split("-")[0] for item in items if "-" in item} & items, "red tasks and their overdue milestones"
    mails = Counter(m.removeprefix("<").split("@")[0] for m in system.mailbox.message_ids[mails_before:])
    hooks = Counter(system.webhooks.message_ids[hooks_before:])
    assert mails == expected["email"], "every mail once, none lost"
    assert hooks - Counter([killed_id]) == expected["webhook"], "every webhook once, and the killed send once more"
    resent = [event for _path, event in system.webhooks.received[hooks_before:] if event["id"] == killed_id]
    assert len(resent) == 2 and resent[0]["data"] == resent[1]["data"]
