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

from tests.faults.system import System, connect, run_scenario, scenarios, settled_notices

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


@pytest.mark.timeout(120)
async def test_a_notifier_killed_after_the_server_took_its_mail_sends_it_again_under_the_same_message_id(system):
    """The one window no notifier can close: the SMTP server has the whole message, the sender dies
    before the server's answer arrives (RFC 1047, "Duplicate messages and SMTP").
    The other notifier sends that notice again, and it carries the same Message-ID, so mail systems
    can fold the two; every other notice arrives once."""
    schema = f"notifier_{TAG}_data"
    received_before, killed_before = len(system.mailbox.message_ids), len(system.mailbox.killed)
    system.mailbox.hold()
    await system.start_notifiers(2, schema)
    system.mailbox.kill_next_sender(after_data=True)
    system.mailbox.release()
    while len(system.mailbox.killed) == killed_before:
        await asyncio.sleep(0.05)
    _pid, killed_message_id = system.mailbox.killed[-1]

    conn = await connect(system.database_url)
    try:
        assert await settled_notices(conn, schema, time.monotonic() + 60) == 0
        sent = await conn.fetchval(f'SELECT count(*) FROM "{schema}".deliveries WHERE status = $1', "sent")
    finally:
        await conn.close()
    received = system.mailbox.message_ids[received_before:]
    assert sent > 0 and len(set(received)) == sent
    assert Counter(received) - Counter(set(received)) == Counter([killed_message_id])
