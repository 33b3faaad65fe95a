"""Posting events in the three CloudEvents HTTP modes, read back from the broker in binary mode."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime

import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from tests.intake.conftest import BATCH, STRUCTURED, case_opened, header, progress

pytestmark = pytest.mark.database

SHANGHAI_MORNING = datetime.fromisoformat("2026-11-26T09:30:00+08:00")


async def test_structured_event_is_published_in_binary_mode_keyed_by_subject(intake):
    key = await intake.key("market-regulation")
    event = progress("T07", "market-regulation")
    async with intake.client(key) as client:
        response = await client.post("/v1/events", content=json.dumps(event), headers=STRUCTURED)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": [event["id"]], "duplicates": []}

    (record,) = await intake.published(count=1)
    assert record.key == b"T07"
    assert json.loads(record.value) == event["data"]
    assert {name: value.decode() for name, value in record.headers} == {
        "ce_specversion": "1.0", "ce_id": event["id"], "ce_source": "/departments/market-regulation",
        "ce_type": "duban.task.progress-reported.v1", "ce_subject": "T07", "ce_time": "2026-11-26T09:30:00+08:00",
        "content-type": "application/json"}


async def test_the_cloudevents_sdk_posts_structured_and_binary(intake):
    key = await intake.key("tax-bureau")
    events = [CloudEvent({"specversion": "1.0", "id": f"refund-2026-{n}", "source": "/departments/tax-bureau",
                          "type": "duban.case.opened.v1", "subject": f"REFUND-{n}", "time": SHANGHAI_MORNING,
                          "datacontenttype": "application/json"},
                         {"case_type": "export_tax_refund", "reference": f"闽税退〔2026〕{n}号"}) for n in (1, 2)]
    structured = ce_http.to_structured(events[0], JSONFormat())
    binary = ce_http.to_binary(events[1], JSONFormat())
    async with intake.client(key) as client:
        for message in (structured, binary):
            response = await client.post("/v1/events", content=message.body, headers=message.headers)
            assert response.status_code == 202, response.text

    records = await intake.published(count=2)
    read = {header(r, "ce_id"): (r.key, json.loads(r.value), header(r, "ce_time")) for r in records}
    assert read == {
        "refund-2026-1": (b"REFUND-1", {"case_type": "export_tax_refund", "reference": "闽税退〔2026〕1号"},
                          "2026-11-26T09:30:00+08:00"),
        "refund-2026-2": (b"REFUND-2", {"case_type": "export_tax_refund", "reference": "闽税退〔2026〕2号"},
                          "2026-11-26T09:30:00+08:00"),
    }


async def test_binary_mode_reports_missing_attributes_instead_of_inventing_them(intake):
    key = await intake.key("tax-bureau")
    async with intake.client(key) as client:
        response = await client.post("/v1/events", content=b'{"case_type": "export_tax_refund"}', headers={
            "content-type": "application/json; charset=utf-8", "ce-specversion": "1.0",
            "ce-source": "/departments/tax-bureau", "ce-type": "duban.case.opened.v1", "ce-subject": "R-9",
            "ce-time": "2026-11-26 09:30:00+08:00"})
    assert response.status_code == 400
    (failure,) = response.json()["events"]
    assert failure["index"] == 0 and failure["id"] is None
    assert {e["path"] for e in failure["errors"]} == {"/id", "/time"}


async def test_batch_publishes_every_event_in_order(intake):
    key = await intake.key("district-court")
    events = [case_opened(f"BK-{n}", "simple_bankruptcy", "district-court") for n in range(5)]
    events.append(progress("T20", "district-court", 80))
    async with intake.client(key) as client:
        response = await client.post("/v1/events", content=json.dumps(events), headers=BATCH)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": [e["id"] for e in events], "duplicates": []}
    records = await intake.published(count=6)
    assert sorted(header(r, "ce_id") for r in records) == sorted(e["id"] for e in events)
    assert all(r.key.decode() == header(r, "ce_subject") for r in records)


async def test_curl_posts_an_event(intake, tmp_path):
    key = await intake.key("market-regulation")
    event = progress("T07", "market-regulation")
    (tmp_path / "event.json").write_text(json.dumps(event, ensure_ascii=False), encoding="utf-8")
    result = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", f"{intake.url}/v1/events", "-H", f"authorization: Bearer {key}",
         "-H", "content-type: application/cloudevents+json", "--data-binary", f"@{tmp_path / 'event.json'}"],
        capture_output=True, text=True, timeout=30, check=True)
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "202", body
    assert json.loads(body)["accepted"] == [event["id"]]
    (record,) = await intake.published(count=1)
    assert json.loads(record.value)["note"] == "企业开办一表填报已上线"
