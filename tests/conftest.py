"""Real infrastructure for the tests: a PostgreSQL server and a Kafka-compatible broker.

PostgreSQL: DUBAN_TEST_DATABASE_URL (an external server; CI points it at PostgreSQL 15) or else an
embedded PostgreSQL started for the session. Each session works in a database of its own, so runs
never see each other's rows. Broker: DUBAN_TEST_KAFKA_BOOTSTRAP or else a Tansu started for the
session on a free port."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import pytest
import uvicorn

from duban.auth import Role, TokenVerifier, ensure_local_keys, issue_token
from duban.broker import ensure_topics, wait_for_broker
from duban.embedded import EmbeddedPostgres, start_tansu
from duban.pg import create_pool, migrate
from duban.settings import ServiceSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_block(size: int) -> int:
    """A base port b with b+1 … b+size all free now (the launcher puts its services there)."""
    for _ in range(100):
        base = random.randrange(20000, 60000 - size)
        try:
            with contextlib.ExitStack() as held:
                for port in range(base + 1, base + size + 1):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError(f"no block of {size} free ports found")


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory) -> str:
    """URL of the server's maintenance database (`postgres`)."""
    if url := os.environ.get("DUBAN_TEST_DATABASE_URL"):
        yield url
        return
    pgdata = tmp_path_factory.mktemp("pg")
    # Its watchdog stops it even when pytest is killed before this fixture's teardown runs.
    server = EmbeddedPostgres(pgdata)
    yield server.url
    server.close()
    shutil.rmtree(pgdata, ignore_errors=True)


@pytest.fixture(scope="session")
async def database_url(postgres_server_url: str) -> str:
    """A fresh database for this test session on the chosen server."""
    name = f"duban_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(postgres_server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    yield urlunsplit(urlsplit(postgres_server_url)._replace(path=f"/{name}"))
    admin = await asyncpg.connect(postgres_server_url)
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture(scope="session")
async def kafka_bootstrap(tmp_path_factory) -> str:
    if bootstrap := os.environ.get("DUBAN_TEST_KAFKA_BOOTSTRAP"):
        yield bootstrap
        return
    address = f"127.0.0.1:{free_port()}"
    broker = start_tansu(address, tmp_path_factory.mktemp("tansu") / "tansu.log")  # dies with pytest, however it ends
    await wait_for_broker(ServiceSettings(kafka_bootstrap=address))
    yield address
    broker.terminate()
    broker.wait(10)


class Tansu:
    """A broker of one test's own, so it can be stopped and started again (empty: its memory goes with it)."""

    def __init__(self, log_dir) -> None:
        self.address, self.log_dir, self.process = f"127.0.0.1:{free_port()}", log_dir, None

    async def start(self, *topics: str) -> None:
        self.process = start_tansu(self.address, self.log_dir / "tansu.log")
        settings = ServiceSettings(kafka_bootstrap=self.address, topic_partitions=4)
        await wait_for_broker(settings)
        await ensure_topics(settings, list(topics))

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing is answered, as from a broker that hangs."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.resume()  # a stopped process would hold its SIGTERM until continued
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
async def own_tansu(tmp_path) -> Tansu:
    broker = Tansu(tmp_path)
    yield broker
    broker.stop()


@pytest.fixture
def unique_topics() -> ServiceSettings:
    """Topic names of one test's own, so tests sharing the session broker never read each other's events."""
    tag = uuid.uuid4().hex[:8]
    return ServiceSettings(topic_dept_events=f"duban.dept-events.{tag}", topic_tracker_changes=f"duban.tracker-changes.{tag}",
                           topic_partitions=4)


ROOT = Path(__file__).resolve().parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(text: str) -> datetime:
    """An Asia/Shanghai civil time ("2021-09-30 16:00") as an instant."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


@contextlib.asynccontextmanager
async def schema_pool(database_url: str, schema: str, *, max_size: int = 4) -> AsyncIterator[asyncpg.Pool]:
    """A pool of the service's own kind (search_path = its schema), closed afterwards."""
    pool = await create_pool(database_url, schema, max_size=max_size)
    try:
        yield pool
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def migrated_schema(database_url: str, service: str) -> AsyncIterator[str]:
    """A fresh schema with `service`'s migrations applied, dropped afterwards: tests that share the
    session database never see each other's rows."""
    name = f"{service}_{uuid.uuid4().hex[:10]}"
    await migrate(database_url, name, ROOT / "services" / service / "migrations")
    try:
        yield name
    finally:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f'DROP SCHEMA "{name}" CASCADE')
        finally:
            await conn.close()


@dataclass(frozen=True)
class Tokens:
    """Bearer tokens signed with the session's key pair, which every service the tests start trusts."""

    private_key: Path
    public_key: Path

    def issue(self, role: Role = "district-office", department: str | None = None, *, subject: str | None = None,
              ttl: timedelta = timedelta(hours=1), **settings) -> str:
        if department is not None:
            role = "department"
        return issue_token(self.private_key, ServiceSettings(**settings), role=role, department=department,
                           subject=subject, ttl=ttl)

    def headers(self, role: Role = "district-office", department: str | None = None, **options) -> dict[str, str]:
        return {"authorization": f"Bearer {self.issue(role, department, **options)}"}

    def verifier(self) -> TokenVerifier:
        return TokenVerifier(ServiceSettings(auth_public_key_file=str(self.public_key)))


@pytest.fixture(scope="session", autouse=True)
def tokens(tmp_path_factory) -> Tokens:
    """A key pair for the session, named in DUBAN_AUTH_PUBLIC_KEY_FILE so that every service the tests
    start, in-process or as a child process, verifies tokens with it (as `duban run` arranges)."""
    private, public = ensure_local_keys(tmp_path_factory.mktemp("auth"))
    saved = {name: os.environ.pop(name, None) for name in ("DUBAN_AUTH_JWKS_URL", "DUBAN_AUTH_PUBLIC_KEY_FILE")}
    os.environ["DUBAN_AUTH_PUBLIC_KEY_FILE"] = str(public)
    yield Tokens(private, public)
    for name, value in saved.items():
        os.environ.pop(name, None)
        if value is not None:
            os.environ[name] = value


def read_api(router, pool: asyncpg.Pool, tokens: Tokens):
    """A service's read API as its app serves it (problem documents, token checks), without its consumer."""
    from fastapi import FastAPI

    from duban.problems import install_problem_handlers

    app = FastAPI()
    app.state.pool, app.state.verifier = pool, tokens.verifier()
    install_problem_handlers(app)
    app.include_router(router)
    return app


@contextlib.asynccontextmanager
async def serving(app, lifespan: str = "off", port: int | None = None) -> AsyncIterator[str]:
    """The app under a real uvicorn on a free port (or `port`, to serve again where it was) in this event loop;
    yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan=lifespan))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def schemathesis(document: Path, url: str, credential: str, workdir: Path, *, max_examples: int,
                 config_file: Path | None = None) -> subprocess.CompletedProcess:
    """Schemathesis from a committed OpenAPI document against a running service, with a bearer credential;
    every check that can hold for these APIs."""
    config = ["--config-file", str(config_file)] if config_file else []
    return subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", *config, "run", str(document), "--url", url,
         "-H", f"Authorization: Bearer {credential}", "--checks",
         "not_a_server_error,negative_data_rejection,status_code_conformance,content_type_conformance,"
         "response_schema_conformance,response_headers_conformance",
         "--phases", "examples,coverage,fuzzing", "--max-examples", str(max_examples), "--workers", "1",
         "--seed", "2021", "--suppress-health-check", "all"],
        cwd=workdir, capture_output=True, text=True, timeout=280)


def pytest_collection_modifyitems(items) -> None:
    # A test that takes the session database is a database test, whether or not its author said so:
    # CI runs these again against an external PostgreSQL 15.
    for item in items:
        if "database_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.database)
