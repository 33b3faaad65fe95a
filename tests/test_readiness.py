"""Readiness tells the truth and outages end in 503, not 500: a stream processor (a real tracker
process) is not ready while its broker is down and ready again once it is back; a PostgreSQL restart
under running services answers 503 `database-unavailable` problems, then 2xx again."""

from __future__ import annotations

import json

import httpx
import pytest

from duban.embedded import EmbeddedPostgres
from tests.conftest import migrated_schema
from tests.intake.conftest import STRUCTURED, intake_settings, progress, running_intake
from tests.processes import ServiceProcess
from tests.tracker.runtime import create_topics, tracker_env, wait_for

pytestmark = [pytest.mark.database, pytest.mark.timeout(300)]


async def readiness(url: str) -> tuple[int, dict]:
    async with httpx.AsyncClient(timeout=5) as client:
        try:
            response = await client.get(url + "/readyz")
        except httpx.HTTPError as error:
            return 0, {"error": repr(error)}
        return response.status_code, response.json()


@pytest.fixture
def tracker_process(tmp_path, unique_topics):
    """Makes one tracker process for the test and kills it at the end, whatever happened."""
    made: list[ServiceProcess] = []

    def make(database_url: str, schema: str, bootstrap: str) -> ServiceProcess:
        settings = unique_topics.model_copy(update={"kafka_bootstrap": bootstrap})
        env = tracker_env(settings, database_url=database_url, schema=schema, group=f"tracker-{schema}",
                          data_dir=tmp_path)
        made.append(ServiceProcess(env, tmp_path / "tracker.log").start())
        return made[-1]

    yield make
    for process in made:
        if process.process.poll() is None:
            process.kill()


async def test_a_stream_processor_is_not_ready_while_its_broker_is_down(database_url, own_tansu, unique_topics,
                                                                        tracker_process):
    topics = [unique_topics.topic_dept_events, unique_topics.topic_tracker_changes]
    await own_tansu.start(*topics)
    async with migrated_schema(database_url, "tracker") as schema:
        tracker = tracker_process(database_url, schema, own_tansu.address)
        await wait_for(lambda: _status_is(tracker.url, 200), 90, "the tracker to be ready", tracker)

        own_tansu.stop()
        status, body = await wait_for(lambda: _status_is(tracker.url, 503), 10, "the tracker to be unready", tracker)
        assert body["checks"]["kafka"].startswith("failed"), body
        assert body["checks"]["postgresql"] == "ok"

        await own_tansu.start(*topics)  # an empty broker: the topics are created again, as an operator would
        await wait_for(lambda: _status_is(tracker.url, 200), 90, "the tracker to be ready again", tracker)
        assert tracker.process.poll() is None


async def _status_is(url: str, expected: int):
    status, body = await readiness(url)
    return (status, body) if status == expected else None


async def test_a_postgresql_restart_is_503_database_unavailable_then_2xx(tmp_path, kafka_bootstrap, unique_topics,
                                                                         tracker_process, tokens):
    server = EmbeddedPostgres(tmp_path / "pg")
    try:
        async with migrated_schema(server.url, "tracker") as tracker_schema, \
                migrated_schema(server.url, "intake") as intake_schema:
            settings = unique_topics.model_copy(update={"kafka_bootstrap": kafka_bootstrap})
            await create_topics(settings)
            tracker = tracker_process(server.url, tracker_schema, kafka_bootstrap)
            await wait_for(lambda: _status_is(tracker.url, 200), 90, "the tracker to be ready", tracker)
            intake_config = intake_settings(server.url, intake_schema, kafka_bootstrap,
                                            topic_dept_events=settings.topic_dept_events)
            async with running_intake(intake_config) as intake, httpx.AsyncClient(timeout=30) as client:
                key = await intake.key("market-regulation")
                calls = {
                    "tracker": lambda: client.get(tracker.url + "/v1/tasks/T07", headers=tokens.headers()),
                    "intake": lambda: client.post(intake.url + "/v1/events", headers=STRUCTURED | {
                        "authorization": f"Bearer {key}"}, content=json.dumps(progress("T07", "market-regulation"))),
                }
                for name, call in calls.items():
                    assert (await call()).status_code in (200, 202), name

                server.stop()
                for name, call in calls.items():
                    response = await call()
                    assert response.status_code == 503, (name, response.text)
                    assert response.headers["content-type"] == "application/problem+json"
                    assert response.json()["type"].endswith("/database-unavailable"), response.json()
                    assert int(response.headers["retry-after"]) > 0
                status, body = await readiness(tracker.url)
                assert status == 503 and body["checks"]["postgresql"].startswith("failed"), body

                server.start()
                # Pooled connections broke with the restart: each one is replaced on its next use. Every
                # answer meanwhile is a 503 problem (never a 500), and soon only 2xx come back.
                for name, call in calls.items():
                    answers = []
                    for _attempt in range(20):
                        answers.append((await call()).status_code)
                        if answers[-1] in (200, 202):
                            break
                    assert answers[-1] in (200, 202), (name, answers)
                    assert set(answers[:-1]) <= {503}, (name, answers)
                await wait_for(lambda: _status_is(tracker.url, 200), 30, "the tracker to be ready again", tracker)
    finally:
        server.close()
