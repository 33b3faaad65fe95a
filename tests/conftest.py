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
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import asyncpg
import pytest

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

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
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


def pytest_collection_modifyitems(items) -> None:
    # A test that takes the session database is a database test, whether or not its author said so:
    # CI runs these again against an external PostgreSQL 15.
    for item in items:
        if "database_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.database)
