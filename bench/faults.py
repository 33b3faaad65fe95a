"""Faults against the running system: nothing accepted is lost or applied twice, no notice is sent twice.

Starts an embedded PostgreSQL, a Tansu broker behind a TCP proxy (every service reaches the broker
through it), intake and tracker as processes (tests/faults/system.py, shared with the tests).
For each scenario, department systems post `--rate` events/s (task progress and case events over
many aggregates, each with its department's API key) to intake over HTTP for `--seconds`, resending
after a 5xx as intake asks; after `--fault-at` seconds one fault is injected:

1. tracker SIGKILL: the tracker process is killed and started again a second later;
2. broker stall 10 s: the proxy stops forwarding in both directions, holding every connection open;
3. PostgreSQL restart: fast shutdown, three seconds down, started on the same data directory;
4. notifier SIGKILL: two notifier processes (one consumer group, a fresh schema) mail every
   escalation to a real aiosmtpd server; the one whose connection gives the next recipient is
   killed in the middle of that send.

Per scenario: accepted (202), applied (the tracker's processed-events ledger), lost, applied twice
(a report or case event stored twice), notices received, duplicate notices (Message-IDs received
more than once) and recovery (seconds from the fault's end until every event accepted before then
was applied). Lost, twice and duplicate notices must be 0.

    .venv/bin/python bench/faults.py [--seconds 60] [--fault-at 15] [--rate 50]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.faults.system import HEADER, System, run_scenario, scenarios  # noqa: E402


async def main(args: argparse.Namespace) -> int:
    failed = False
    with tempfile.TemporaryDirectory(prefix="duban-faults-") as tmp:
        system = System(Path(tmp))
        try:
            await system.start()
            print(f"{args.rate:g} events/s for {args.seconds:g} s per scenario, fault after {args.fault_at:g} s")
            print(HEADER, flush=True)
            for scenario in scenarios(system, uuid.uuid4().hex[:8]):
                outcome = await run_scenario(system, scenario, seconds=args.seconds, fault_at_s=args.fault_at,
                                             rate=args.rate)
                print(outcome.row(), flush=True)
                failed |= bool(outcome.lost or outcome.twice or outcome.duplicate_notices or outcome.unsent_notices
                               or outcome.refused or outcome.accepted != outcome.posted)
                for refusal in outcome.refused[:5]:
                    print("  refused:", refusal)
        finally:
            system.stop()
    print("FAILED: lost, twice, dup notices and unsent must be 0, and every post accepted" if failed
          else "ok: 0 lost, 0 applied twice, 0 duplicate notices")
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="load per scenario")
    parser.add_argument("--fault-at", type=float, default=15.0, help="seconds into the load")
    parser.add_argument("--rate", type=float, default=50.0, help="events per second")
    sys.exit(asyncio.run(main(parser.parse_args())))
