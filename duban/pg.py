"""PostgreSQL access: a pool pinned to the service's own schema, and versioned SQL migrations.

Every service owns exactly one schema; its pool's search_path is that schema alone, so a query
that strays into another service's tables fails instead of silently coupling the two."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

# What "the database is not answering" looks like from asyncpg, as opposed to a bug in a query: the
# server refused, closed or lost the connection (a restart, a failover, an administrator), the
# connection broke mid-protocol (InternalClientError: asyncpg's pooled connection met a server that
# went away, or answers "another operation is in progress" after a break), the backend was terminated
# (OperatorInterventionError: an administrator or a server shutdown, 57P01–57P03), or it did not answer
# in time. HTTP answers 503 for these, consumers retry them.
DATABASE_UNAVAILABLE = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                        asyncpg.InternalClientError, asyncpg.exceptions.OperatorInterventionError,
                        asyncpg.exceptions.InsufficientResourcesError)
# What a retry on a fresh connection or transaction gets past: the database not answering, or a transaction
# the server gave up to let others go on (a deadlock, a serialization failure). Consumers and jobs retry
# these for their retry budget; anything else is the event's or the caller's fault.
TRANSIENT_ERRORS = (*DATABASE_UNAVAILABLE, asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
# InterfaceErrors that are the caller's or the record's mistake, never an outage: a retry only repeats them.
# The client-side DataError ("invalid query input") lives in asyncpg.exceptions._base: the name
# asyncpg.exceptions.DataError is the server's SQLSTATE class 22, which shadows it there. asyncpg 0.32
# reports a value it cannot encode (a str for an int) with that class-22 exception, which is not transient
# anyway; the client-side class is named here so that no asyncpg raising it turns one record into a retry storm.
_CLIENT_MISTAKES = (asyncpg.exceptions._base.DataError, asyncpg.exceptions.ClientConfigurationError,
                    asyncpg.exceptions.UnsupportedClientFeatureError)


# What PostgreSQL refuses of a record's data, as opposed to a fault of the code: a value it cannot hold (SQLSTATE
# class 22; asyncpg 0.32 raises this class too for a query parameter its codecs cannot encode, the codec's error as
# `__cause__`), a row that breaks an integrity constraint (class 23: not-null, check, foreign key, unique,
# exclusion), or the client-side "invalid query input" (named for the asyncpg versions that raise it).
_REFUSED_DATA = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, asyncpg.exceptions._base.DataError)
# The source files of asyncpg's codecs, as its compiled frames name them. COPY's binary rows
# (`copy_records_to_table`) raise a codec's TypeError, OverflowError or ValueError as it is, unwrapped.
_CODEC_SOURCES = ("asyncpg/pgproto/codecs/", "asyncpg/protocol/codecs/")


def refused_data(error: BaseException) -> bool:
    """Whether `error` is storage refusing a value or a row it was given (see _REFUSED_DATA), including a
    value of the wrong Python type or range that an asyncpg codec refused to encode for COPY. A TypeError
    raised anywhere else is a fault of the code, not of the data."""
    if isinstance(error, _REFUSED_DATA):
        return True
    return isinstance(error, TypeError | ValueError | ArithmeticError) and _raised_in(error, _CODEC_SOURCES)


def _raised_in(error: BaseException, sources: tuple[str, ...]) -> bool:
    """Whether the innermost frame of `error`'s traceback, where it was raised, lies in one of `sources`."""
    frame = error.__traceback__
    if frame is None:
        return False
    while frame.tb_next is not None:
        frame = frame.tb_next
    return frame.tb_frame.f_code.co_filename.startswith(sources)


def database_unavailable(error: BaseException) -> bool:
    return isinstance(error, DATABASE_UNAVAILABLE) and not isinstance(error, _CLIENT_MISTAKES)


def transient(error: BaseException) -> bool:
    """Whether a retry on a fresh connection or transaction may get past `error` (see TRANSIENT_ERRORS)."""
    return isinstance(error, TRANSIENT_ERRORS) and not isinstance(error, _CLIENT_MISTAKES)


_MIGRATION_FILE = re.compile(r"^([0-9]{3})_([a-z0-9_]+)\.sql$")
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
        # Only when missing: where an operator created the schema for the service's own role (CloudNativePG's
        # Database), that role may lack CREATE on the database, which even IF NOT EXISTS checks first.
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema):
            await conn.execute(f'CREATE SCHEMA "{schema}"')
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


async def pending_migrations(database_url: str, schema: str, directory: Path) -> list[str]:
    """The migrations of one schema not applied yet, as "component:version"; applies nothing.
    A schema (or its schema_migrations table) that does not exist yet has them all pending."""
    wanted = load_migrations("platform", PLATFORM_MIGRATIONS) + load_migrations(schema, directory)
    conn = await asyncpg.connect(database_url)
    try:
        done = set()
        if await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".schema_migrations') is not None:
            done = {(r["component"], r["version"]) for r in
                    await conn.fetch(f'SELECT component, version FROM "{schema}".schema_migrations')}
    finally:
        await conn.close()
    return [f"{m.component}:{m.version}" for m in wanted if (m.component, m.version) not in done]


async def _administer(database_url: str, statement: str) -> None:
    """Run `statement` ({name}: the URL's database) from the server's `postgres` database."""
    url = urlsplit(database_url)
    admin = await asyncpg.connect(urlunsplit(url._replace(path="/postgres")))
    try:
        await admin.execute(statement.format(name=f'"{url.path.lstrip("/")}"'))
    finally:
        await admin.close()


async def drop_database(database_url: str) -> None:
    """Drop the URL's database if it exists (the demo's, which starts over with its clock)."""
    await _administer(database_url, "DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def ensure_database(database_url: str) -> None:
    """Create the URL's database if it is missing (the embedded server starts with `postgres` only)."""
    try:
        conn = await asyncpg.connect(database_url)
    except asyncpg.InvalidCatalogNameError:
        await _administer(database_url, "CREATE DATABASE {name}")
    else:
        await conn.close()
