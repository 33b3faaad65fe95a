"""`duban outbox parked|release`: the outbox rows the relay parked (duban/outbox.py), listed with their
reason, and let go again."""

from __future__ import annotations

import asyncio

from duban.outbox import parked_rows, release
from duban.pg import create_pool
from duban.settings import ServiceSettings


def register(subcommands) -> None:
    parser = subcommands.add_parser("outbox", help="list or release outbox rows the relay parked")
    parser.add_argument("--schema", default="tracker", help="the service schema whose outbox is read (default tracker)")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("parked", help="list parked rows with their reason")
    releasing = actions.add_parser("release", help="let the relay try a parked row again")
    releasing.add_argument("seq", type=int)

    async def act(args) -> int:
        pool = await create_pool(ServiceSettings().database_url, args.schema, max_size=1)
        try:
            async with pool.acquire() as conn:
                if args.action == "release":
                    if not await release(conn, args.seq):
                        print(f"duban outbox: no parked row {args.seq} in {args.schema}")
                        return 1
                    print(f"released row {args.seq}; the relay publishes it on its next cycle")
                    return 0
                rows = await parked_rows(conn)
        finally:
            await pool.close()
        for r in rows:
            print(f"{r['seq']}\t{r['event_id']}\t{r['type']}\t{r['subject']}\t{r['parked_at']:%Y-%m-%dT%H:%M:%SZ}"
                  f"\t{r['park_reason']}")
        print(f"{len(rows)} parked row(s) in {args.schema}")
        return 0

    parser.set_defaults(handler=lambda args: asyncio.run(act(args)))
