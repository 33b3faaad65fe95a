"""A broker that stops or hangs: intake answers 503 with Retry-After within its publish timeout, records
nothing it was not acknowledged, and the department's resend of the same batch is accepted once, with
every event on the topic."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest

from tests.intake.conftest import BATCH, STRUCTURED, header, intake_settings, progress, read_topic, running_intake

pytestmark = pytest.mark.database


@contextlib.asynccontextmanager
async def posting_through(broker, database_url: str, schema: str, **overrides):
    """Intake on `broker` (started here), a department's client, and one event accepted before the fault."""
    settings = intake_settings(database_url, schema, broker.address, retry_after_s=7, **overrides)
    await broker.start(settings.topic_dept_events)
    async with running_intake(settings) as intake, intake.client(await intake.key("market-regulation")) as client:
        before = progress("T07", "market-regulation", 10)
        assert (await client.post("/v1/events", content=json.dumps(before), headers=STRUCTURED)).status_code == 202
        yield settings, intake, client, before


async def resend_until_accepted(client, batch: list[dict]):
    """The department resends the same batch after every 503, as it is told to."""
    for _attempt in range(30):
        response = await client.post("/v1/events", content=json.dumps(batch), headers=BATCH)
        if response.status_code != 503:
            break
        await asyncio.sleep(1)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": [e["id"] for e in batch], "duplicates": []}


async def test_broker_down_is_503_and_the_resend_is_accepted_once(database_url, intake_schema, own_tansu):
    async with posting_through(own_tansu, database_url, intake_schema, publish_timeout_s=2.0) as (
            settings, intake, client, before):
        own_tansu.stop()
        batch = [progress("T07", "market-regulation", 20 + n) for n in range(5)]
        started = time.monotonic()
        response = await client.post("/v1/events", content=json.dumps(batch), headers=BATCH)
        assert response.status_code == 503, response.text
        assert time.monotonic() - started < 10
        assert response.headers["retry-after"] == "7"
        assert response.json()["type"].endswith("/broker-unavailable")
        recorded = await intake.pool.fetch("SELECT id FROM accepted_events")
        assert [r["id"] for r in recorded] == [before["id"]], "nothing of the batch counts as accepted"

        await own_tansu.start(settings.topic_dept_events)  # an empty broker: its memory went with it
        await resend_until_accepted(client, batch)  # 503 until the producer has reconnected
        again = await client.post("/v1/events", content=json.dumps(batch), headers=BATCH)
        assert again.json() == {"accepted": [], "duplicates": [e["id"] for e in batch]}

    # Every event of the batch is on the topic; a record the 503 stopped waiting for may have reached the
    # restarted broker too (decision 030): a second copy, which the consumers' ledgers skip.
    records = await read_topic(own_tansu.address, settings.topic_dept_events, timeout_s=3)
    assert {header(r, "ce_id") for r in records} == {e["id"] for e in batch}
    assert len(records) <= 2 * len(batch)


async def test_readiness_follows_the_broker_and_intake_recovers_within_5_s_of_its_return(
        database_url, intake_schema, own_tansu):
    settings = intake_settings(database_url, intake_schema, own_tansu.address, publish_timeout_s=2.0)
    await own_tansu.start(settings.topic_dept_events)
    async with running_intake(settings) as intake:
        async with intake.client(await intake.key("market-regulation")) as client:
            assert (await client.get("/readyz")).status_code == 200

            own_tansu.stop()
            response = await client.post("/v1/events", content=json.dumps(progress("T07", "market-regulation")),
                                         headers=STRUCTURED)
            assert response.status_code == 503, response.text
            ready = await client.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.json()["checks"]["kafka"].startswith("failed")

            await own_tansu.start(settings.topic_dept_events)
            returned = time.monotonic()
            while True:  # a department resending at once, again and again
                response = await client.post("/v1/events", content=json.dumps(progress("T07", "market-regulation")),
                                             headers=STRUCTURED)
                if response.status_code == 202 or time.monotonic() - returned > 30:
                    break
                await asyncio.sleep(0.1)
            recovered_after_s = time.monotonic() - returned
            print(f"intake published again {recovered_after_s:.2f} s after the broker returned")
            assert response.status_code == 202, response.text
            assert recovered_after_s < 5.0
            while (await client.get("/readyz")).status_code != 200:  # its broker check is cached for 1.5 s
                assert time.monotonic() - returned < 5.0, "intake publishes but does not say it is ready"
                await asyncio.sleep(0.1)


# Time for intake to answer beyond its publish timeout on a loaded machine. Without the deadline over the
# whole wait, a post after the first one of a stall took twice the publish timeout.
MARGIN_S = 4.0


async def test_a_broker_that_hangs_is_503_within_the_publish_timeout_and_the_resend_loses_nothing(
        database_url, intake_schema, own_tansu):
    async with posting_through(own_tansu, database_url, intake_schema, publish_timeout_s=6.0) as (
            settings, intake, client, before):
        own_tansu.pause()  # connections stay open, nothing is answered
        batch = [progress("T07", "market-regulation", 20 + n) for n in range(5)]
        answers = []
        try:
            for _post in range(2):  # the first post of a stall, and one meeting a producer already stuck
                started = time.monotonic()
                response = await client.post("/v1/events", content=json.dumps(batch), headers=BATCH)
                answers.append((response, time.monotonic() - started))
        finally:
            own_tansu.resume()
        for response, elapsed in answers:
            assert response.status_code == 503, response.text
            assert elapsed < settings.publish_timeout_s + MARGIN_S, f"answered after {elapsed:.1f} s"
            assert response.headers["retry-after"] == "7"
            assert response.json()["type"].endswith("/broker-unavailable")
        recorded = await intake.pool.fetch("SELECT id FROM accepted_events")
        assert [r["id"] for r in recorded] == [before["id"]], "nothing of the batch counts as accepted"

        await resend_until_accepted(client, batch)

    # The hung attempt may have reached the broker too: the consumers' ledger keeps (source, id) once.
    records = await read_topic(own_tansu.address, settings.topic_dept_events, timeout_s=3)
    assert {header(r, "ce_id") for r in records} == {before["id"], *(e["id"] for e in batch)}
