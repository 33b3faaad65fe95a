"""The metrics service's face to the entry package: how `duban run` starts it (`SERVICE`) and its command,
`duban metrics rebuild`: recompute every case-fed indicator sum and the duration histogram from the
stored cases (`store.rebuild`), for an operator after an indicator is added or its definition changed
(docs/metrics.md). Values that change are published with a history row under the given cause."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from duban.service import ServiceSpec
from services.metrics.settings import MetricsSettings

SERVICE = ServiceSpec("metrics", __package__, MetricsSettings, Path(__file__).parent / "migrations")


async def rebuild(settings, cause: str) -> int:
    """The number of closed cases read."""
    from duban.catalog import load_catalog
    from duban.pg import create_pool
    from services.metrics import store

    pool = await create_pool(settings.database_url, settings.schema_name, max_size=1)
    try:
        async with pool.acquire() as conn:
            return await store.rebuild(conn, load_catalog(), cause=cause)
    finally:
        await pool.close()


def register(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser("metrics", help="the metrics service's stored figures")
    actions = parser.add_subparsers(dest="metrics_command", required=True, metavar="ACTION")
    rebuild_parser = actions.add_parser(
        "rebuild", help="recompute every case-fed indicator and the duration histogram from the stored cases")
    rebuild_parser.add_argument("--cause", default="operator rebuild",
                                help="recorded with each value that changes (default: %(default)s)")

    def run(args: argparse.Namespace) -> int:
        read = asyncio.run(rebuild(MetricsSettings(), args.cause))
        print(f"rebuilt the case-fed indicators from {read} closed cases")
        return 0

    rebuild_parser.set_defaults(handler=run)
