"""`duban recompute --calendar` against real schemas: an official year replaces a provisional one."""

from __future__ import annotations

import pytest

from duban.recompute_cli import recompute_calendar
from services.metrics.settings import MetricsSettings
from services.tracker import store as tracker_store
from services.tracker.settings import TrackerSettings
from tests.conftest import migrated_schema, schema_pool
from tests.metrics.conftest import CATALOG, HOURS, at

pytestmark = pytest.mark.database

NOTICE_2027 = ('year: 2027\nsource: "fictional test notice"\nholidays:\n'
               '  - {name: 元旦, from: 2027-01-01, to: 2027-01-04}\nworkdays:\n  - {name: 元旦, date: 2027-01-09}\n')


async def test_recompute_moves_lights_and_clocks_to_the_official_year(feed, pool, database_url, schema, tmp_path,
                                                                      monkeypatch):
    await feed.closed("Y1", "export_tax_refund", "tax-bureau", "2026-12-28 09:00", "2027-01-06 09:00")
    provisional = HOURS.calendar.version
    (tmp_path / "2027.yaml").write_text(NOTICE_2027, encoding="utf-8")
    monkeypatch.setenv("DUBAN_CALENDAR_DIR", str(tmp_path))
    async with migrated_schema(database_url, "tracker") as tracker_schema:
        async with schema_pool(database_url, tracker_schema) as tracker:
            async with tracker.acquire() as conn:
                await tracker_store.sync_catalog(conn, CATALOG)
            done = await recompute_calendar(
                TrackerSettings(database_url=database_url, schema_name=tracker_schema, clock_start=at("2027-03-01 09:00"),
                                clock_speed=0),
                MetricsSettings(database_url=database_url, schema_name=schema))
            # Every task was evaluated on the new calendar and its first light announced through the outbox.
            assert await tracker.fetchval("SELECT count(*) FROM tasks WHERE light_as_of IS NOT NULL") == 28
            assert await tracker.fetchval("SELECT count(*) FROM outbox") == done.light_changes >= 28
    assert done.calendar_version != provisional and "+files." in done.calendar_version
    assert done.cases == 1
    case = await pool.fetchrow("SELECT working_days, calendar_provisional, calendar_version FROM cases")
    assert tuple(case) == (5, False, done.calendar_version)
    history = await pool.fetch("SELECT value, calendar_version FROM indicator_history"
                               " WHERE indicator_id = 'export_tax_refund_days' AND period = '2027'"
                               " AND department = 'all' ORDER BY id")
    assert [tuple(r) for r in history] == [(6.0, provisional), (None, done.calendar_version),
                                           (5.0, done.calendar_version)]
