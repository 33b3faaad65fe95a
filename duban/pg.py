"""PostgreSQL access: a pool pinned to the service's own schema, and versioned SQL migrations.

Every service owns exactly one schema; its pool's search_path is that schema alone, so a query
that strays into another service's tables fails instead of silently coupling the two."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

_MIGRATION_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
# The largest bigint: an HTTP parameter beyond it (an offset, an id) is the client's error, not the database's.
BIGINT_MAX = 2**63 - 1


async def create_pool(database_url: str, schema: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        database_url, min_size=min_size, max_size=max_size,
        server_settings={"search_path": schema, "application_name": f"duban-{schema}", "timezone": "UTC"},
    )


PLATFORM_MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    sql: str


def load_migrations(component: str, directory: Path) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if not match:
            raise ValueError(f"{path}: migration files are named NNN_snake_case.sql")
        migrations.append(Migration(component, int(match[1]), match[2], path.read_text(encoding="utf-8")))
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"{directory}: migration versions must run 1..n without gaps, found {versions}")
    return migrations


async def migrate(database_url: str, schema: str, directory: Path) -> list[str]:
    """Apply the pending migrations of one schema: first the platform tables every service has
    (processed-events ledger, outbox), then the service's own. Each migration is one transaction;
    returns the migrations applied now as "component:version".

    An advisory lock per schema makes concurrent starts (two replicas, the launcher and a test) safe."""
    applied_now: list[str] = []
    conn = await asyncpg.connect(database_url, server_settings={"timezone": "UTC"})
    try:
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"duban-migrate:{schema}")
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (component text NOT NULL, version integer NOT NULL,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))"
        )
        done = {(r["component"], r["version"]) for r in await conn.fetch("SELECT component, version FROM schema_migrations")}
        pending = load_migrations("platform", PLATFORM_MIGRATIONS) + load_migrations(schema, directory)
        for migration in pending:
            if (migration.component, migration.version) in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute("INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)",
                                   migration.component, migration.version, migration.name)
            applied_now.append(f"{migration.component}:{migration.version}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock_all()")
        await conn.close()
    return applied_now


async def ensure_database(database_url: str) -> None:
    """Create the URL's database if it is missing (the embedded server starts with `postgres` only)."""
    try:
        conn = await asyncpg.connect(database_url)
    except asyncpg.InvalidCatalogNameError:
        url = urlsplit(database_url)
        admin = await asyncpg.connect(urlunsplit(url._replace(path="/postgres")))
        try:
            await admin.execute(f'CREATE DATABASE "{url.path.lstrip("/")}"')
        finally:
            await admin.close()
    else:
        await conn.close()
