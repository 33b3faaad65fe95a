"""Running real tracker processes for the tests: topics, a workload, the process itself, and a TCP
proxy in front of PostgreSQL that can cut the database off."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg

from duban.auth import ensure_local_keys
from duban.broker import ensure_topics, make_producer
from duban.embedded import die_with_parent
from duban.events.kafka import to_kafka
from duban.settings import ServiceSettings
from tests.conftest import ROOT, free_port
from tests.tracker.conftest import CATALOG, NOW, at, case_event, progress

FIXED_NOW = NOW.isoformat()


def workload(cases: int, reports: int, seed: int = 7) -> list[dict]:
    """Department events as they would arrive: case lives of five events each (opened, a step, a
    pause and its resume, the close), and progress reports from each task's lead department."""
    rng = random.Random(seed)
    lives = []
    for n in range(cases):
        case_id, t = f"W{n:05d}-{uuid.uuid4().hex[:6]}", at("2021-08-02 09:00") + timedelta(minutes=n)
        lives.append([
            case_event("opened", case_id, t, {}),
            case_event("step-completed", case_id, t + timedelta(hours=1), {"step": "review"}),
            case_event("paused", case_id, t + timedelta(hours=2), {"reason": "supplement"}),
            case_event("resumed", case_id, t + timedelta(days=1), {"reason": "supplement"}),
            case_event("closed", case_id, t + timedelta(days=2),
                       {"outcome": "completed", "handled_instantly": False, "trips": 1}),
        ])
    tasks = CATALOG.tasks
    singles = [progress(task.id, task.lead[0], at("2021-08-01 09:00") + timedelta(minutes=i), "in_progress",
                        rng.randint(0, 99)) for i, task in enumerate(rng.choice(tasks) for _ in range(reports))]
    # Interleave the lives (each kept in order, as one key's events are) with the reports.
    events, queues = [], [list(life) for life in lives] + [[e] for e in singles]
    while queues:
        queue = rng.choice(queues)
        events.append(queue.pop(0))
        if not queue:
            queues.remove(queue)
    return events


async def create_topics(settings: ServiceSettings) -> None:
    main = [settings.topic_dept_events, settings.topic_tracker_changes]
    await ensure_topics(settings, main + [t + settings.dead_letter_suffix for t in main])


async def produce(settings: ServiceSettings, events: list[dict], *, per_second: float | None = None) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        started = time.monotonic()
        for i, event in enumerate(events):
            key, value, headers = to_kafka(event)
            await producer.send(settings.topic_dept_events, value, key=key, headers=headers)
            if per_second and i % 50 == 49:
                await asyncio.sleep(max(0.0, started + (i + 1) / per_second - time.monotonic()))
        await producer.flush()
    finally:
        await producer.stop()


@dataclass
class TrackerProcess:
    """`python -m services.tracker` (or another stream service's `module`) with the test's topics, schema and group."""

    env: dict
    log_path: Path
    process: subprocess.Popen | None = None
    port: int = field(default_factory=free_port)
    module: str = "services.tracker"

    def start(self) -> TrackerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes it for its lifetime
        self.process = subprocess.Popen([sys.executable, "-m", self.module], cwd=ROOT, stdout=log,
                                        stderr=subprocess.STDOUT, env=self.env | {"DUBAN_HTTP_PORT": str(self.port)},
                                        preexec_fn=die_with_parent)  # never outlives the tests
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> bool:
        """SIGTERM and wait; True when it shut down cleanly (uvicorn re-raises SIGTERM once it has)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode in (0, -signal.SIGTERM)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def tracker_env(settings: ServiceSettings, *, database_url: str, schema: str, group: str, data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")}
    return env | {
        "DUBAN_DATABASE_URL": database_url, "DUBAN_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "DUBAN_TOPIC_DEPT_EVENTS": settings.topic_dept_events,
        "DUBAN_TOPIC_TRACKER_CHANGES": settings.topic_tracker_changes,
        "DUBAN_SCHEMA_NAME": schema, "DUBAN_CONSUMER_GROUP": group, "DUBAN_DATA_DIR": str(data_dir),
        "DUBAN_KAFKA_REBALANCE_TIMEOUT_S": "4", "DUBAN_KAFKA_SESSION_TIMEOUT_S": "6",
        "DUBAN_CLOCK_START": FIXED_NOW, "DUBAN_CLOCK_SPEED": "0", "DUBAN_LOG_JSON": "false",
        # The session's key when a test holds `tokens`, so its tokens open this tracker's API too.
        "DUBAN_AUTH_PUBLIC_KEY_FILE": os.environ.get("DUBAN_AUTH_PUBLIC_KEY_FILE") or str(ensure_local_keys(data_dir)[1]),
    }


async def wait_for(predicate, timeout_s: float, what: str, *processes: TrackerProcess):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := await predicate():
            return value
        await asyncio.sleep(0.2)
    logs = "\n".join(p.log()[-4000:] for p in processes)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}\n{logs}")


async def exactly_once(pool: asyncpg.Pool, events: list[dict]) -> None:
    """Every event took effect once: in the ledger, as a stored report or case event, and each
    closed case was announced exactly once."""
    cases = {e["subject"] for e in events if e["type"].startswith("duban.case.")}
    reports = sum(e["type"] == "duban.task.progress-reported.v1" for e in events)
    assert await pool.fetchval("SELECT count(*) FROM processed_events") == len(events)
    assert await pool.fetchval("SELECT count(*) FROM task_reports") == reports
    assert await pool.fetchval("SELECT count(*) FROM case_events") == len(events) - reports
    closed = await pool.fetch("SELECT subject, count(*) AS n FROM outbox WHERE type = 'duban.tracker.case.closed.v1'"
                              " GROUP BY subject")
    assert {r["subject"] for r in closed} == cases and {r["n"] for r in closed} == {1}
    states = await pool.fetch("SELECT status, (state->>'events')::int AS n FROM cases")
    assert {(r["status"], r["n"]) for r in states} == {("closed", 5)}


class PgProxy:
    """A TCP proxy to PostgreSQL; `cut()` drops every connection and refuses new ones until `restore()`.

    `url` is the proxied database's URL (TCP, or a Unix socket directory in `?host=`, as the embedded
    server gives); `.url` is the same database through the proxy."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        socket_dir = parse_qs(parts.query).get("host", [None])[0]
        if socket_dir:
            path = f"{socket_dir}/.s.PGSQL.{parts.port or 5432}"
            self._connect = lambda: asyncio.open_unix_connection(path)
        else:
            self._connect = lambda: asyncio.open_connection(parts.hostname, parts.port or 5432)
        self.port = free_port()
        user = parts.username or "postgres"
        password = f":{parts.password}" if parts.password else ""
        self.url = urlunsplit(parts._replace(netloc=f"{user}{password}@127.0.0.1:{self.port}", query=""))
        self.open = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> PgProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        try:
            up_reader, up_writer = await self._connect()
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def cut(self) -> None:
        self.open = False
        for writer in list(self._writers):
            writer.transport.abort()

    def restore(self) -> None:
        self.open = True

    async def close(self) -> None:
        self.cut()
        self._server.close()
        await self._server.wait_closed()
