"""Bad input gets problem+json and never a half-accepted batch; repeats are answered, not republished."""

from __future__ import annotations

import contextlib
import json
import select
import socket

import pytest

from tests.intake.conftest import BATCH, STRUCTURED, intake_settings, progress, running_intake

pytestmark = pytest.mark.database


async def test_a_batch_with_one_bad_event_is_refused_whole_with_its_index(intake):
    key = await intake.key("market-regulation")
    events = [progress("T07", "market-regulation", n * 10) for n in range(4)]
    events[2]["data"]["percent"] = "60"
    del events[2]["time"]
    async with intake.client(key) as client:
        response = await client.post("/v1/events", content=json.dumps(events), headers=BATCH)
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"].endswith("/invalid-events")
        assert problem["events"] == [{"index": 2, "id": events[2]["id"], "errors": [
            {"path": "/data/percent", "message": "'60' is not of type 'integer'"},
            {"path": "/time", "message": "is required"}]}]
        marker = progress("T07", "market-regulation")
        assert (await client.post("/v1/events", content=json.dumps(marker), headers=STRUCTURED)).status_code == 202
    records = await intake.published(until_id=marker["id"])
    assert len(records) == 1, "nothing of the refused batch was published"


@pytest.mark.parametrize(("body", "kind"), [
    (b'{"specversion": "1.0",', "malformed-json"),
    (b'{"value": NaN}', "malformed-json"),
    (b"[" * 100_000, "malformed-json"),
    (b"[]", "malformed-batch"),
    (b"{}", "malformed-batch"),
])
async def test_unreadable_bodies(intake, body, kind):
    async with intake.client(await intake.key("education")) as client:
        response = await client.post("/v1/events", content=body, headers=BATCH)
    assert (response.status_code, response.json()["type"].rsplit("/", 1)[1]) == (400, kind)


async def test_unknown_type_is_400_naming_the_known_ones(intake):
    event = progress("T07", "market-regulation", type="duban.task.abandoned.v1")
    async with intake.client(await intake.key("market-regulation")) as client:
        response = await client.post("/v1/events", content=json.dumps(event), headers=STRUCTURED)
    assert response.status_code == 400
    (error,) = response.json()["events"][0]["errors"]
    assert error["path"] == "/type" and "duban.task.progress-reported.v1" in error["message"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "application/xml", None])
async def test_unsupported_media_type(intake, content_type):
    headers = {"content-type": content_type} if content_type else {}
    async with intake.client(await intake.key("market-regulation")) as client:
        response = await client.post("/v1/events", content=json.dumps(progress("T07", "market-regulation")),
                                     headers=headers)
    assert response.status_code == 415
    assert response.json()["type"].endswith("/unsupported-media-type")


async def test_too_many_events_in_a_batch(intake):
    events = [progress("T07", "market-regulation") for _ in range(501)]
    async with intake.client(await intake.key("market-regulation")) as client:
        response = await client.post("/v1/events", content=json.dumps(events), headers=BATCH)
    assert response.status_code == 413
    assert response.json()["type"].endswith("/batch-too-large")


async def test_repeats_are_duplicates_and_published_once(intake):
    key = await intake.key("market-regulation")
    first, second = progress("T07", "market-regulation", 40), progress("T07", "market-regulation", 50)
    async with intake.client(key) as client:
        response = await client.post("/v1/events", content=json.dumps([first]), headers=BATCH)
        assert response.json() == {"accepted": [first["id"]], "duplicates": []}
        # A retry of the batch with one new event, the first repeated within the batch too.
        response = await client.post("/v1/events", content=json.dumps([first, second, second]), headers=BATCH)
        assert response.status_code == 202
        assert response.json() == {"accepted": [second["id"]], "duplicates": [first["id"], second["id"]]}
        # The same event in binary mode is the same event.
        response = await client.post("/v1/events", content=json.dumps(first["data"]), headers={
            "content-type": "application/json", "ce-specversion": "1.0", "ce-id": first["id"],
            "ce-source": first["source"], "ce-type": first["type"], "ce-subject": "T07",
            "ce-time": "2026-11-26T09%3A30%3A00%2B08%3A00"})
        assert response.json() == {"accepted": [], "duplicates": [first["id"]]}
    records = await intake.published(count=2)
    await_more = await intake.published(timeout_s=1)
    assert len(records) == len(await_more) == 2


async def test_same_id_different_payload_is_a_conflict(intake):
    key = await intake.key("market-regulation")
    event = progress("T07", "market-regulation", 40)
    async with intake.client(key) as client:
        assert (await client.post("/v1/events", content=json.dumps(event), headers=STRUCTURED)).status_code == 202
        changed = dict(event, data={"status": "in_progress", "percent": 70})
        response = await client.post("/v1/events", content=json.dumps([progress("T07", "market-regulation"), changed]),
                                     headers=BATCH)
    assert response.status_code == 409
    (conflict,) = response.json()["events"]
    assert (conflict["index"], conflict["id"]) == (1, event["id"])
    assert "was accepted before" in conflict["reason"]
    assert len(await intake.published(timeout_s=1)) == 1


async def test_rate_limit_answers_429_with_retry_after(database_url, intake_schema, kafka_bootstrap):
    settings = intake_settings(database_url, intake_schema, kafka_bootstrap, rate_limit_per_s=0.5,
                               rate_limit_burst=5, max_batch_events=5)
    async with running_intake(settings) as intake:
        async with intake.client(await intake.key("market-regulation")) as client:
            batch = [progress("T07", "market-regulation") for _ in range(4)]
            assert (await client.post("/v1/events", content=json.dumps(batch), headers=BATCH)).status_code == 202
            batch = [progress("T07", "market-regulation") for _ in range(3)]
            response = await client.post("/v1/events", content=json.dumps(batch), headers=BATCH)
            assert response.status_code == 429
            assert response.json()["type"].endswith("/rate-limited")
            assert 3 <= int(response.headers["retry-after"]) <= 4  # 2 tokens short at 0.5 per second
        # Another department has a bucket of its own.
        async with intake.client(await intake.key("tax-bureau")) as client:
            event = progress("T09", "tax-bureau")
            assert (await client.post("/v1/events", content=json.dumps(event), headers=STRUCTURED)).status_code == 202


async def test_declared_oversized_body_is_refused_before_it_is_read(database_url, intake_schema, kafka_bootstrap):
    settings = intake_settings(database_url, intake_schema, kafka_bootstrap, max_body_bytes=64 * 1024)
    async with running_intake(settings) as intake:
        key = await intake.key("market-regulation")
        events = [progress("T07", "market-regulation", note="说明" * 900) for _ in range(20)]
        async with intake.client(key) as client:
            response = await client.post("/v1/events", content=json.dumps(events), headers=BATCH)
        assert response.status_code == 413
        assert response.json()["type"].endswith("/body-too-large")


async def test_streamed_oversized_body_is_cut_off_while_it_streams(database_url, intake_schema, kafka_bootstrap):
    """A chunked body with no declared length: intake answers 413 after the limit, long before the
    client has sent the 256 MiB it is trying to send."""
    settings = intake_settings(database_url, intake_schema, kafka_bootstrap, max_body_bytes=1024 * 1024)
    async with running_intake(settings) as intake:
        key = await intake.key("market-regulation")
        port = settings.http_port
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall((f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
                          "Content-Type: application/cloudevents-batch+json\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
            chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"[" + b" " * (64 * 1024 - 1))
            sent, answer = 0, b""
            sock.setblocking(False)
            while sent < 256 * 1024 * 1024:
                readable, writable, _ = select.select([sock], [sock], [], 10)
                if readable:
                    answer = sock.recv(65536)
                    break
                try:
                    sent += sock.send(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    # The server answered and closed with our chunks unread, so its side reset the connection;
                    # the answer may still wait in our receive buffer, readable before the reset is reported.
                    with contextlib.suppress(OSError):
                        sock.setblocking(True)
                        answer = sock.recv(65536)
                    break
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert sent < 32 * 1024 * 1024, f"the client got to send {sent} bytes"


async def test_the_same_id_from_two_departments_is_two_events(intake):
    ids = "shared-id-2026-0001"
    for department, task in (("market-regulation", "T07"), ("tax-bureau", "T09")):
        async with intake.client(await intake.key(department)) as client:
            event = progress(task, department, id=ids)
            response = await client.post("/v1/events", content=json.dumps(event), headers=STRUCTURED)
            assert response.json() == {"accepted": [ids], "duplicates": []}
    assert len(await intake.published(count=2)) == 2
