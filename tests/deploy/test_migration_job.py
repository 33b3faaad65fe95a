"""`duban migrate` as Kubernetes runs it: the migration Job migrates each service's schema with that
service's own database role (a schema the operator created for it, on a database where the role may
not create schemas), and each pod's init container only waits, applying nothing, until it is done."""

from __future__ import annotations

import subprocess
import sys
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.conftest import ROOT


def duban(*args: str, database_url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "entrypoints.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={"DUBAN_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"})


@pytest.fixture
async def role_owned_schema(postgres_server_url: str):
    """A database where role duban_notifier_<tag> owns the schema `notifier` and may create nothing else,
    as CloudNativePG's Database with `schemas: [{name: notifier, owner: …}]` leaves it."""
    tag = uuid.uuid4().hex[:8]
    database, role = f"duban_job_{tag}", f"duban_notifier_{tag}"
    admin = await asyncpg.connect(postgres_server_url)
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.execute(f'CREATE ROLE "{role}" LOGIN')
    await admin.close()
    url = urlsplit(postgres_server_url)._replace(path=f"/{database}")
    owner = await asyncpg.connect(urlunsplit(url))
    await owner.execute(f'REVOKE CREATE ON DATABASE "{database}" FROM PUBLIC')
    await owner.execute(f'CREATE SCHEMA notifier AUTHORIZATION "{role}"')
    await owner.close()
    host = url.netloc.rpartition("@")[2]
    yield urlunsplit(url._replace(netloc=f"{role}@{host}"))
    admin = await asyncpg.connect(postgres_server_url)
    await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
    await admin.execute(f'DROP ROLE "{role}"')
    await admin.close()


async def test_the_service_role_migrates_its_schema_and_the_wait_sees_it(role_owned_schema: str):
    waiting = duban("migrate", "--service", "notifier", "--wait", "0", database_url=role_owned_schema)
    assert waiting.returncode == 1 and "notifier" in waiting.stderr and "platform:1" in waiting.stderr

    applied = duban("migrate", "--service", "notifier", database_url=role_owned_schema)
    assert applied.returncode == 0, applied.stderr
    assert "'notifier': ['platform:1'" in applied.stdout and "tracker" not in applied.stdout

    done = duban("migrate", "--service", "notifier", "--wait", "0", database_url=role_owned_schema)
    assert done.returncode == 0, done.stderr

    conn = await asyncpg.connect(role_owned_schema)
    try:
        owners = {r["tableowner"] for r in await conn.fetch("SELECT tableowner FROM pg_tables WHERE schemaname = 'notifier'")}
        others = await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname IN ('intake', 'tracker', 'metrics')")
    finally:
        await conn.close()
    assert owners == {urlsplit(role_owned_schema).username}, "the service's role owns every table of its schema"
    assert others == 0, "--service migrates that service's schema alone"


async def test_the_wait_reports_an_unreachable_database_and_gives_up():
    waiting = duban("migrate", "--wait", "0", database_url="postgresql://nobody@127.0.0.1:1/none")
    assert waiting.returncode == 1 and "database" in waiting.stderr
