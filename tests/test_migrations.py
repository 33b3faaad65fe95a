"""Every service's schema migrates on the session's PostgreSQL (embedded 18, or CI's external 15)."""

from __future__ import annotations

import asyncio

import asyncpg

from entrypoints.launcher import SERVICES, migrate_all
from duban.pg import PLATFORM_MIGRATIONS


async def test_all_schemas_migrate_and_a_second_run_applies_nothing(database_url):
    first = await migrate_all(database_url)
    assert all(versions for versions in first.values()), first
    assert all(v.startswith("platform:1") for v in (versions[0] for versions in first.values()))
    assert await migrate_all(database_url) == {name: [] for name in first}


async def test_concurrent_migrations_apply_each_version_once(database_url):
    results = await asyncio.gather(*(migrate_all(database_url) for _ in range(3)))
    for name in results[0]:
        applied = [version for result in results for version in result[name]]
        assert len(applied) == len(set(applied)), f"{name}: a migration ran twice: {applied}"
    conn = await asyncpg.connect(database_url)
    try:
        for spec in (s for s in SERVICES if s.schema):
            rows = await conn.fetch(f'SELECT component, version FROM "{spec.schema}".schema_migrations')
            assert len(rows) == len(set(rows)) == len(list(spec.migrations.glob("*.sql"))) + len(list(
                PLATFORM_MIGRATIONS.glob("*.sql")))
            # The platform tables exist in the service's own schema, not in a shared one.
            assert await conn.fetchval("SELECT to_regclass($1)", f"{spec.schema}.processed_events") is not None
    finally:
        await conn.close()
