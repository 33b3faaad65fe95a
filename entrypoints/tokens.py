"""`duban tokens issue`: a bearer token signed with the embedded default key pair under the data dir
(`DUBAN_DATA_DIR`, default .run), which `duban run` makes the services trust; `duban tokens keys`
prints that pair's public key for the services of other shapes (compose, a local cluster). Production tokens
come from the district's identity provider instead (docs/decisions/012-bearer-tokens-and-roles.md)."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from duban.arguments import hours
from duban.auth import ROLES, ensure_local_keys, issue_token
from duban.catalog import load_catalog
from duban.settings import ServiceSettings


def _issue(args: argparse.Namespace) -> int:
    role = args.role or ("department" if args.department else None)
    if role is None:
        print("error: name a --role or a --department", file=sys.stderr)
        return 2
    if (role == "department") != (args.department is not None):
        print("error: a department token needs --department CODE, and only a department token takes one",
              file=sys.stderr)
        return 2
    if args.department is not None:
        try:
            kind = load_catalog().department(args.department).kind
        except KeyError:
            print(f"error: no department {args.department!r} in the plan catalog (see `duban catalog`)", file=sys.stderr)
            return 1
        if kind != "unit":
            print(f"error: {args.department} is a collective; its member units get tokens of their own", file=sys.stderr)
            return 1
    settings = ServiceSettings()
    private_key, _ = ensure_local_keys(settings.data_dir)
    print(issue_token(private_key, settings, role=role, department=args.department, subject=args.subject,
                      ttl=timedelta(hours=args.hours)))
    return 0


def _keys(args: argparse.Namespace) -> int:
    """The public half goes to whatever verifies the tokens: a file the services mount, a Secret."""
    _, public_key = ensure_local_keys(ServiceSettings().data_dir)
    sys.stdout.write(public_key.read_text(encoding="ascii"))
    return 0


def register(subcommands) -> None:
    tokens = subcommands.add_parser(
        "tokens", help="bearer tokens for people and read clients (the embedded default key pair)",
        description="Sign bearer tokens with the key pair under DUBAN_DATA_DIR (default .run), made on first use.")
    actions = tokens.add_subparsers(dest="action", required=True, metavar="ACTION")
    issue = actions.add_parser("issue", help="print a signed token")
    issue.add_argument("--role", choices=ROLES, help="department (with --department), district-office or viewer")
    issue.add_argument("--department", metavar="CODE", help="the department a department token acts for")
    issue.add_argument("--subject", help="who the token is for, recorded with what it does (default: the role"
                                         " or the department code)")
    issue.add_argument("--hours", type=hours(0, 24 * 366, low_included=False), default=8.0,
                       help="how long the token is valid (default 8, at most a year)")
    issue.set_defaults(handler=_issue)
    keys = actions.add_parser("keys", help="make the key pair if there is none and print its public key (PEM)")
    keys.set_defaults(handler=_keys)
