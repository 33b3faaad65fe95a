"""`duban recompute --calendar`: recompute what was computed on another calendar, now.

After a year's official schedule arrives (a new `contracts/calendar/<year>.yaml`, or a
`chinesecalendar` upgrade), the services recompute at start-up anyway; this command does the same
against the database without waiting for a restart: the tracker's task lights (their changes go to
its outbox, which the running tracker publishes, so metrics and the notifier follow) and the metrics
service's case clocks and indicator figures (the earlier values stay in the history with the
calendar version that computed them). Run it with the new calendar in place, after the services
have been rolled out on it, or a running tracker re-evaluates with the old calendar it loaded."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

from duban.catalog import load_catalog
from duban.pg import create_pool
from duban.workcal import OfficeHours
from services.metrics import store as metrics_store
from services.metrics.settings import MetricsSettings
from services.tracker.evaluation import TaskEvaluator
from services.tracker.scheduled import reevaluate_all
from services.tracker.settings import TrackerSettings


@dataclass(frozen=True)
class Recomputed:
    calendar_version: str
    light_changes: int  # change events the tracker recorded
    cases: int  # closed cases whose clock changed


async def recompute_calendar(tracker_settings, metrics_settings, *, every_case: bool = False) -> Recomputed:
    catalog, hours = load_catalog(), OfficeHours.from_env()
    evaluator = TaskEvaluator(catalog, hours.calendar, tracker_settings.retroactive_grace_working_days)
    tracker = await create_pool(tracker_settings.database_url, tracker_settings.schema_name, max_size=2)
    try:
        light_changes = await reevaluate_all(tracker, evaluator, tracker_settings.clock())
    finally:
        await tracker.close()
    metrics = await create_pool(metrics_settings.database_url, metrics_settings.schema_name, max_size=2)
    try:
        async with metrics.acquire() as conn:
            cases = await metrics_store.recompute_calendar(conn, catalog, hours, every_case=every_case)
    finally:
        await metrics.close()
    return Recomputed(hours.calendar.version, light_changes, cases)


def register(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser("recompute", help="recompute stored lights, clocks and figures")
    parser.add_argument("--calendar", action="store_true", required=True,
                        help="on the current working-day calendar: what a provisional year or no data computed")
    parser.add_argument("--every-case", action="store_true",
                        help="every closed case's clock, not only provisional or clockless ones (after a correction)")

    def run(args: argparse.Namespace) -> int:
        done = asyncio.run(recompute_calendar(TrackerSettings(), MetricsSettings(), every_case=args.every_case))
        print(f"calendar {done.calendar_version}: {done.light_changes} task change events recorded,"
              f" {done.cases} case clocks changed")
        return 0

    parser.set_defaults(handler=run)
