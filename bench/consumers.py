"""Metrics and notifier consumer throughput and event-to-state latency, against the raw pipeline.

Starts an embedded PostgreSQL and a Tansu broker, then:

1. changes: N department events are applied by a tracker, whose outbox relay publishes the change
   events they cause (cases opened and closed, tasks updated, lights…) to the changes topic;
2. raw pipeline: the same consume + read + write of those change records as bench/tracker.py's;
3. sustained: `python -m services.metrics`, then `python -m services.notifier`, consume the backlog
   of change events; events/s from the first applied batch to the last, and the ratio to raw;
4. latency: with all three running, department events arrive at a steady 1,000 events/s; per change
   event, the time from its event time (the tracker's clock when it applied the cause) to the
   start of the transaction that applied it in each consumer (the ledger row's processed_at):
   p50 and p99. This includes the outbox relay's delay, printed on its own (event time to the row
   marked published), and stops short of the batch's own apply time. The consumer's own part,
   published-to-state (the row marked published to that transaction's start), follows; it can be
   below zero, as the relay marks its rows after the broker's acknowledgement, when a consumer may
   already have fetched them.

    .venv/bin/python bench/consumers.py [--events 20000] [--rate 1000] [--seconds 15] [--root DIR]
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
from tracker import arguments, broker_and_database, produce, raw_pipeline, start_service, sustained, workload

from duban.broker import ensure_topics, wait_for_broker
from entrypoints.launcher import migrate_all
from duban.settings import ServiceSettings

CONSUMERS = {"metrics": "services.metrics", "notifier": "services.notifier"}


async def published(conn: asyncpg.Connection) -> tuple[int, int]:
    """(change events in the tracker's outbox, of which published)."""
    row = await conn.fetchrow("SELECT count(*) AS n, count(published_at) AS p FROM tracker.outbox")
    return row["n"], row["p"]


async def all_published(conn: asyncpg.Connection, events: int) -> int:
    while await conn.fetchval("SELECT count(*) FROM tracker.processed_events") < events:
        await asyncio.sleep(0.1)
    while (counts := await published(conn))[0] != counts[1]:
        await asyncio.sleep(0.1)
    return counts[0]


async def relay_delays(conn: asyncpg.Connection, after_seq: int) -> list[float]:
    return [r["s"] for r in await conn.fetch(
        "SELECT extract(epoch FROM published_at - event_time)::float8 AS s FROM tracker.outbox WHERE seq > $1",
        after_seq)]


async def latencies(conn: asyncpg.Connection, schema: str, after_seq: int) -> tuple[list[float], list[float]]:
    """Per change event: event time to state, and the consumer's own part of it, published to state."""
    rows = await conn.fetch(
        "SELECT extract(epoch FROM p.processed_at - o.event_time)::float8 AS s,"
        " extract(epoch FROM p.processed_at - o.published_at)::float8 AS own"
        f" FROM {schema}.processed_events p JOIN tracker.outbox o ON o.event_id::text = p.id WHERE o.seq > $1",
        after_seq)
    return [r["s"] for r in rows], [r["own"] for r in rows]


async def main(events_n: int, rate: float, seconds: float, root: Path) -> None:
    with broker_and_database() as (tmp, url, address):
        services: list[subprocess.Popen] = []
        results: dict[str, tuple[float, tuple[list[float], list[float]]]] = {}
        try:
            settings = ServiceSettings(kafka_bootstrap=address, topic_partitions=12)
            await wait_for_broker(settings)
            await ensure_topics(settings)
            await migrate_all(url)
            conn = await asyncpg.connect(url)
            await produce(settings, workload(events_n, datetime(2021, 9, 1, tzinfo=timezone.utc)))
            services.append(start_service("services.tracker", url, address, tmp / "tracker", root)[0])
            changes = await all_published(conn, events_n)
            raw = await raw_pipeline(settings, url, settings.topic_tracker_changes, changes)

            rates = {}
            for name, module in CONSUMERS.items():
                services.append(start_service(module, url, address, tmp / name, root)[0])
                rates[name] = await sustained(conn, changes, name)

            before, _ = await published(conn)
            after_seq = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM tracker.outbox")
            steady = workload(int(rate * seconds), datetime.now(timezone.utc))
            await produce(settings, steady, rate=rate)
            total = await all_published(conn, events_n + len(steady))
            for name in CONSUMERS:
                while await conn.fetchval(f"SELECT count(*) FROM {name}.processed_events") < total:
                    await asyncio.sleep(0.05)
                results[name] = (rates[name], await latencies(conn, name, after_seq))
            relayed = await relay_delays(conn, after_seq)
            await conn.close()
        finally:
            for process in services:
                process.terminate()
                process.wait(30)

    def p50_p99(delays: list[float]) -> str:
        return f"p50 {statistics.median(delays) * 1000:.0f} ms, p99 {statistics.quantiles(delays, n=100)[98] * 1000:.0f} ms"

    print(f"raw pipeline (consume + read + write of {changes} change events): {raw:>7.0f} events/s")
    print(f"at {rate:.0f} department events/s ({(total - before) / seconds:.0f} change events/s):"
          f" outbox relay, event time to published: {p50_p99(relayed)}")
    for name, (backlog_rate, (lags, own)) in results.items():
        print(f"{name:<9} sustained {backlog_rate:>7.0f} events/s   ratio {name}/raw {backlog_rate / raw:.2f}"
              f"   event-to-state ({len(lags)} events): {p50_p99(lags)}   published-to-state: {p50_p99(own)}")


if __name__ == "__main__":
    args = arguments(__doc__, events=20_000).parse_args()
    asyncio.run(main(args.events, args.rate, args.seconds, args.root.resolve()))
