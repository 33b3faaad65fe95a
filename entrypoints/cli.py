"""The `duban` command. Each feature module contributes its sub-commands through `register`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Registrar = Callable[[argparse._SubParsersAction], None]


def _registrars() -> list[Registrar]:
    # Imported when the parser is built, not when this module is: importing it stays cheap.
    from entrypoints.catalog import register as catalog
    from entrypoints.launcher import register as launcher
    from entrypoints.outbox import register as outbox
    from entrypoints.recompute import register as recompute
    from entrypoints.services import SERVICE_CLIS
    from entrypoints.tokens import register as tokens
    from entrypoints.topics import register as topics
    from entrypoints.workcal import register as workcal

    # The platform's commands, then each service's (services/<name>/cli.py).
    return [catalog, workcal, launcher, topics, recompute, outbox, tokens] + [s.register for s in SERVICE_CLIS]


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
