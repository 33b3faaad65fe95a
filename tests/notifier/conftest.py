"""A notifier schema of each test's own, tracker change events applied through the notifier's
handler, and real receivers: HTTP servers standing in for the robots and webhooks, an SMTP server."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
import yaml
from aiosmtpd.controller import Controller

from duban.catalog import load_catalog
from duban.consumer import Delivery, InboundEvent
from duban.events.models import MilestoneStatusChanged, TaskLightChanged, TaskUpdated
from duban.workcal import OfficeHours, OfficeSchedule, WorkingCalendar
from services.notifier.api import install, router
from services.notifier.channels import make_channels
from services.notifier.handlers import NotifierHandler
from services.notifier.routes import Routes
from services.notifier.scheduler import Scheduler
from services.notifier.settings import NotifierSettings
from tests.conftest import at, free_port, migrated_schema, read_api, schema_pool, serving

CATALOG = load_catalog()
LIGHT_CHANGED, MILESTONE_CHANGED, TASK_UPDATED = TaskLightChanged.TYPE, MilestoneStatusChanged.TYPE, TaskUpdated.TYPE
HOURS = OfficeHours(WorkingCalendar(), OfficeSchedule.default())


@pytest.fixture
async def schema(database_url: str) -> str:
    async with migrated_schema(database_url, "notifier") as name:
        yield name


@pytest.fixture
async def pool(database_url: str, schema: str) -> asyncpg.Pool:
    async with schema_pool(database_url, schema, max_size=6) as pool:
        yield pool


# -- tracker change events ----------------------------------------------------------------------


def tracker_event(type_: str, subject: str, data: dict, time: datetime) -> dict:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/services/tracker", "type": type_,
            "subject": subject, "time": time.isoformat(), "datacontenttype": "application/json", "data": data}


def light_changed(task: str, to: str, when: datetime, frm: str | None = None, reason: str = "past_due") -> dict:
    return tracker_event(LIGHT_CHANGED, task, {"from": frm, "to": to, "reason": reason, "as_of": when.isoformat()}, when)


def task_updated(task: str, status: str, percent: int, light: str, when: datetime) -> dict:
    return tracker_event(TASK_UPDATED, task, {"status": status, "percent": percent, "light": light,
                                              "reported_at": when.isoformat()}, when)


def milestone_changed(milestone: str, to: str, when: datetime, frm: str | None = "open") -> dict:
    return tracker_event(MILESTONE_CHANGED, milestone.split("-")[0],
                         {"milestone_id": milestone, "from": frm, "to": to, "as_of": when.isoformat()}, when)


async def apply_alone(pool: asyncpg.Pool, handler: NotifierHandler, ce: dict) -> None:
    """Apply one event the way duban.consumer does: checked, applied in a transaction, its after-commit
    effects run once that has committed."""
    event = InboundEvent(ce, Delivery("duban.tracker-changes", 0, 0, None, None, ()))
    handler.check(event)
    async with pool.acquire() as conn, conn.transaction():
        after_commit = await handler.apply_batch(conn, [event])
    for effect in after_commit:
        effect()


class Feed:
    """Applies events one by one through the service's handler."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool, self.handler = pool, NotifierHandler(CATALOG)

    async def send(self, *events: dict) -> None:
        for ce in events:
            await apply_alone(self.pool, self.handler, ce)


@pytest.fixture
def feed(pool) -> Feed:
    return Feed(pool)


# -- receivers ----------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: dict
    raw: bytes


@dataclass
class HttpReceiver:
    """A real HTTP server on a free port; answers each POST with the next scripted (status, body). While
    `hold()` is on, it takes requests and keeps their senders waiting for the answer until `release()`.
    With `drip_s` set, it answers a byte at a time, that far apart: slower as a whole than any one read."""

    url: str
    received: list[Received] = field(default_factory=list)
    script: list[tuple[int, dict]] = field(default_factory=list)
    default: tuple[int, dict] = (200, {"errcode": 0, "errmsg": "ok"})
    answering: threading.Event = field(default_factory=threading.Event)
    drip_s: float | None = None

    def __post_init__(self) -> None:
        self.answering.set()

    def hold(self) -> None:
        self.answering.clear()

    def release(self) -> None:
        self.answering.set()

    def bodies(self, path: str | None = None) -> list[dict]:
        return [r.body for r in self.received if path is None or r.path == path]


@pytest.fixture
def http_receiver():
    port = free_port()
    receiver = HttpReceiver(f"http://127.0.0.1:{port}")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            url = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                receiver.received.append(Received(url.path, parse_qs(url.query), dict(self.headers), json.loads(raw), raw))
                status, answer = receiver.script.pop(0) if receiver.script else receiver.default
            receiver.answering.wait()
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if receiver.drip_s is None:
                self.wfile.write(payload)
                return
            with contextlib.suppress(OSError):  # the sender gave up and closed the connection
                for byte in payload:
                    self.wfile.write(bytes([byte]))
                    time.sleep(receiver.drip_s)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.release()
    server.shutdown()
    server.server_close()


class Mailbox:
    """Keeps what it accepts; answers the first attempts with the scripted `refusals` (e.g. "451 …")."""

    def __init__(self) -> None:
        self.messages: list = []
        self.raw: list[bytes] = []  # as they came over the wire, for what parsing hides (header encodings)
        self.refused: list = []
        self.refusals: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        if self.refusals:
            self.refused.append(message)
            return self.refusals.pop(0)
        self.messages.append((envelope.rcpt_tos, message))
        self.raw.append(envelope.original_content)
        return "250 OK"


@pytest.fixture
def smtp_server():
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, mailbox
    controller.stop()


# -- the scheduler wired to the receivers ----------------------------------------------------------


def write_routes(tmp_path: Path, departments: dict) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump({"departments": departments}, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
async def make_scheduler(tmp_path, smtp_server):
    clients = []

    async def make(departments: dict, **overrides) -> Scheduler:
        # The escalation tests' Mondays would bring the leads their weekly digest too; test_digests.py asks for it.
        overrides.setdefault("weekly_digest", False)
        overrides.setdefault("delivery_timeout_s", 5.0)
        controller, _ = smtp_server
        settings = NotifierSettings(notifier_routes=write_routes(tmp_path, departments), smtp_host=controller.hostname,
                                    smtp_port=controller.port, **overrides)
        client = httpx.AsyncClient(timeout=settings.delivery_timeout_s)
        clients.append(client)
        return Scheduler(CATALOG, HOURS, Routes.load(settings.notifier_routes, CATALOG), make_channels(settings, client),
                         settings)

    yield make
    for client in clients:
        await client.aclose()


async def deliveries(pool: asyncpg.Pool, **where) -> list[asyncpg.Record]:
    clauses = " AND ".join(f"{k} = ${i}" for i, k in enumerate(where, 1)) or "true"
    async with pool.acquire() as conn:
        return await conn.fetch(f"SELECT * FROM deliveries WHERE {clauses} ORDER BY id", *where.values())


async def escalation(pool: asyncpg.Pool, item: str) -> asyncpg.Record:
    async with pool.acquire() as conn:
        return await conn.fetchrow("SELECT * FROM escalations WHERE item = $1 ORDER BY id DESC LIMIT 1", item)


class Clock:
    """The API's "now", set by the test."""

    def __init__(self) -> None:
        self.now = at("2021-09-24 10:00")

    def __call__(self):
        return self.now


@pytest.fixture
async def api(pool, tokens):
    """The read API under a real server, a district-office client, and the clock it runs on."""
    clock = Clock()
    async with serving(install(read_api(router, pool, tokens), CATALOG, HOURS, NotifierSettings(), clock)) as url, \
            httpx.AsyncClient(base_url=url, headers=tokens.headers(subject="督查室 王五")) as client:
        yield client, clock
