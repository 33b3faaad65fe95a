"""The tracker service's face to the entry package: how `duban run` starts it (`SERVICE`) and its commands,
`duban replay tracker` (services/tracker/replay.py) and `duban events void` (services/tracker/void.py)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
from pathlib import Path

from duban.pg import create_pool
from duban.service import ServiceSpec
from services.tracker.replay import TrackerRunning, replay
from services.tracker.settings import TrackerSettings
from services.tracker.void import VoidRefused, void_event

SERVICE = ServiceSpec("tracker", __package__, TrackerSettings, Path(__file__).parent / "migrations")


def register(subcommands) -> None:
    _register_replay(subcommands)
    _register_void(subcommands)


def _register_replay(subcommands) -> None:
    parser = subcommands.add_parser("replay", help="rebuild a service's state from its input topic")
    parser.add_argument("service", choices=["tracker"], help="the service whose schema is rebuilt")
    parser.add_argument("--announce", action="store_true",
                        help="publish the rebuilt change events (default: mark them as already published)")

    def run(args: argparse.Namespace) -> int:
        try:
            report = asyncio.run(replay(TrackerSettings(), announce=args.announce))
        except TrackerRunning as exc:
            print(f"duban replay: {exc}")
            return 1
        print(f"replayed {report.events} events: {report.applied} applied, {report.duplicates} duplicates,"
              f" {report.dead} dead-lettered; change events {'announced' if report.announced else 'marked published'}")
        return 0

    parser.set_defaults(handler=run)


def _register_void(subcommands) -> None:
    parser = subcommands.add_parser("events", help="act on events the tracker applied")
    actions = parser.add_subparsers(dest="action", required=True)
    voiding = actions.add_parser("void", help="void an applied event and re-derive the task or case without it")
    voiding.add_argument("source", help="the event's source, e.g. /departments/district-court")
    voiding.add_argument("id", help="the event's id")
    voiding.add_argument("--reason", required=True, help="why it is void (kept with the void)")
    voiding.add_argument("--principal", default=None,
                         help="who voids it (default: the operating-system user, as cli:<user>)")

    async def run(args: argparse.Namespace) -> int:
        settings = TrackerSettings()
        pool = await create_pool(settings.database_url, settings.schema_name, max_size=1)
        try:
            async with pool.acquire() as conn:
                voided = await void_event(conn, args.source, args.id, args.reason,
                                          args.principal or f"cli:{getpass.getuser()}", now=settings.clock())
        except VoidRefused as refused:
            print(f"duban events void: {refused.detail}")
            return 1
        finally:
            await pool.close()
        print(f"voided {voided.type} {voided.event_id} of {voided.subject} ({voided.principal}, {voided.voided_at:%Y-%m-%dT%H:%M:%SZ});"
              f" {voided.changes} change event(s) recorded for the relay")
        return 0

    voiding.set_defaults(handler=lambda args: asyncio.run(run(args)))
