"""The notifier service's face to the entry package: how `duban run` starts it (`SERVICE`) and its command,
`duban routes`: check a notifier routes file against the plan catalog before deploying it, or print the local one."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from duban.catalog import load_catalog
from duban.service import ServiceSpec
from services.notifier.routes import Routes, RoutesError, local_routes
from services.notifier.settings import NotifierSettings

SERVICE = ServiceSpec("notifier", __package__, NotifierSettings, Path(__file__).parent / "migrations")

# The notifier's routes file (department → channels); `duban routes check` reads the same one.
ROUTES_ENV = "DUBAN_NOTIFIER_ROUTES"


def register(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser("routes", help="the notifier's routes file: check it, or print the local one")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="load a routes file and list the departments nobody would be told about")
    check.add_argument("--routes", type=Path, default=os.environ.get(ROUTES_ENV),
                       help=f"the routes file (default: ${ROUTES_ENV})")
    check.set_defaults(handler=run_check)
    local = actions.add_parser("local", help="print a routes file mailing every department at <code>@<domain>")
    local.add_argument("--domain", default="departments.duban.test")
    local.set_defaults(handler=lambda a: print(yaml.safe_dump(local_routes(load_catalog(), a.domain), sort_keys=False),
                                               end=""))


def local_routes_file(path: Path) -> Path:
    """Write the every-department-by-mail routes file (`duban run` points the notifier at it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(local_routes(load_catalog()), sort_keys=False), encoding="utf-8")
    return path


def run_check(args: argparse.Namespace) -> int:
    """0: every department is routed; 1: some are not (listed); 2: the file does not load."""
    catalog = load_catalog()
    try:
        routes = Routes.load(Path(args.routes) if args.routes else None, catalog)
    except RoutesError as exc:
        print(exc, file=sys.stderr)
        return 2
    unrouted = routes.unrouted(catalog)
    for code in unrouted:
        print(f"{code}\t{catalog.department(code).name}\tno route: its notices go nowhere")
    print(f"{len(unrouted)} of {sum(d.kind == 'unit' for d in catalog.departments)} departments unrouted"
          f" ({args.routes or 'no routes file'})", file=sys.stderr)
    return 1 if unrouted else 0
