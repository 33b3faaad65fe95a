"""The `duban` command. Each feature module contributes its sub-commands through `register`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Registrar = Callable[[argparse._SubParsersAction], None]


def _registrars() -> list[Registrar]:
    # Imported here so that `duban --help` stays fast and one broken feature cannot hide the others' help.
    from duban.catalog.cli import register as catalog
    from duban.launcher import register as launcher
    from duban.outbox import register as outbox
    from duban.recompute_cli import register as recompute
    from duban.tokens_cli import register as tokens
    from duban.topics_cli import register as topics
    from duban.workcal.cli import register as workcal
    from services.board.cli import register as bulletin
    from services.intake.keys import register as keys
    from services.notifier.cli import register as routes
    from services.metrics.cli import register as metrics
    from services.tracker.replay import register as replay
    from services.tracker.void import register as void

    return [catalog, workcal, launcher, topics, replay, keys, recompute, outbox, void, tokens, routes, metrics,
            bulletin]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="duban", description="Duban (督办): supervision of the Gulou District work plan")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _registrars():
        register(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
