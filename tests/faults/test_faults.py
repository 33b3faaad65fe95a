"""Nothing accepted is lost or applied twice under faults, with real processes: while department
systems post to intake over HTTP, the tracker is SIGKILLed and restarted, the network to the
broker stalls for 10 s, PostgreSQL restarts, and one of two notifiers is SIGKILLed mid-send.
bench/faults.py runs the same scenarios for 60 s each and prints the table."""

from __future__ import annotations

import math
import uuid

import pytest

from tests.faults.system import System, run_scenario, scenarios

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
