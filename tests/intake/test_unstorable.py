"""What storage cannot hold or what cannot be true is refused at the door with 400 problem+json naming
the field: NUL and unpaired surrogates in free text, instants before the floor or ahead of the clock."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.intake.conftest import BATCH, STRUCTURED, intake_settings, progress, running_intake

pytestmark = pytest.mark.database


def _problem(response) -> dict:
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()


async def test_nul_in_a_note_is_400_at_its_pointer_and_nothing_is_published(intake):
    key = await intake.key("market-regulation")
    bad, good = progress("T07", "market-regulation"), progress("T07", "market-regulation", 70)
    bad["data"]["note"] = "试运行\u0000中"
    async with intake.client(key) as client:
        response = await client.post("/v1/events", content=json.dumps([good, bad]), headers=BATCH)
        assert response.status_code == 400
        problem = _problem(response)
        assert problem["type"].endswith("/invalid-events")
        assert [(e["index"], [x["path"] for x in e["errors"]]) for e in problem["events"]] == [(1, ["/data/note"])]
        marker = progress("T07", "market-regulation")
        assert (await client.post("/v1/events", content=json.dumps(marker), headers=STRUCTURED)).status_code == 202
    assert len(await intake.published(until_id=marker["id"])) == 1, "nothing of the refused batch was published"


@pytest.mark.parametrize(("field", "raw", "pointer"), [
    ("note", '"\\ud800"', "/data/note"),
    ("note", '"a\\udfffb"', "/data/note"),
    ("id", '"\\ud800"', "/id"),
])
async def test_an_unpaired_surrogate_is_400_not_500(intake, field, raw, pointer):
    event = progress("T07", "market-regulation")
    target = event["data"] if field == "note" else event
    target[field] = "PLACEHOLDER"
    body = json.dumps(event).replace('"PLACEHOLDER"', raw)  # the escape as a department would write it
    async with intake.client(await intake.key("market-regulation")) as client:
        response = await client.post("/v1/events", content=body, headers=STRUCTURED)
    assert response.status_code == 400
    problem = _problem(response)
    assert problem["type"].endswith("/invalid-events")
    assert pointer in [error["path"] for error in problem["events"][0]["errors"]]


@pytest.mark.parametrize("time", ["9999-12-31T23:59:59+08:00", "0001-01-01T00:00:00Z", "1900-01-01T08:00:00+08:00",
                                  "1999-12-31T23:59:59Z"])
async def test_an_instant_outside_the_window_is_400_event_time_out_of_range(intake, time):
    event = progress("T07", "market-regulation", time=time)
    async with intake.client(await intake.key("market-regulation")) as client:
        response = await client.post("/v1/events", content=json.dumps(event), headers=STRUCTURED)
    assert response.status_code == 400
    problem = _problem(response)
    assert problem["type"].endswith("/event-time-out-of-range")
    assert [error["path"] for error in problem["events"][0]["errors"]] == ["/time"]


async def test_the_skew_and_the_floor_are_settings(database_url, intake_schema, kafka_bootstrap):
    settings = intake_settings(database_url, intake_schema, kafka_bootstrap, event_time_max_skew_s=3600,
                               event_time_floor="2021-01-01")
    soon = (datetime.now(timezone.utc) + timedelta(minutes=30)).isoformat()
    later = (datetime.now(timezone.utc) + timedelta(minutes=90)).isoformat()
    async with running_intake(settings) as intake:
        async with intake.client(await intake.key("market-regulation")) as client:
            answers = [(await client.post("/v1/events", content=json.dumps(progress("T07", "market-regulation", time=t)),
                                          headers=STRUCTURED)).status_code
                       for t in (soon, later, "2021-01-04T09:00:00+08:00", "2020-12-31T09:00:00+08:00")]
    assert answers == [202, 400, 202, 400]
