"""The intake service's face to the entry package: how `duban run` starts it (`SERVICE`) and its commands,
`duban keys create|list|rotate|revoke` (department API keys, services/intake/keys.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg

from duban.arguments import hours
from duban.service import ServiceSpec
from services.intake.keys import KeyCommandError, connect, create_key, list_keys, revoke_key, rotate_key
from services.intake.settings import IntakeSettings

SERVICE = ServiceSpec("intake", __package__, IntakeSettings, Path(__file__).parent / "migrations")


def _say(text: str) -> None:
    print(text, file=sys.stderr)


async def _run(args: argparse.Namespace) -> int:
    settings = IntakeSettings()
    conn = await connect(settings.database_url, settings.schema_name)
    try:
        if args.action == "create":
            key, token = await create_key(conn, args.department, args.label)
            _say(f"created {key.key_id} for {key.department}; the token below is shown only this once")
            print(token)
        elif args.action == "rotate":
            new, token, old = await rotate_key(conn, args.key_id, timedelta(hours=args.grace_hours))
            _say(f"created {new.key_id}; {old.key_id} stays valid until {old.revoked_at.isoformat()}."
                 " The token below is shown only this once")
            print(token)
        elif args.action == "revoke":
            key = await revoke_key(conn, args.key_id)
            print(f"revoked {key.key_id} ({key.department})")
        else:
            now = datetime.now(timezone.utc)
            print(f"{'KEY':<40} {'DEPARTMENT':<28} {'STATUS':<9} {'CREATED':<20} {'VALID UNTIL':<20}"
                  f" {'REPLACED BY':<40} LABEL")
            for key in await list_keys(conn, args.department, include_revoked=args.all):
                until = key.revoked_at.strftime("%Y-%m-%d %H:%M:%SZ") if key.revoked_at else "-"
                print(f"{key.key_id:<40} {key.department:<28} {key.status(now):<9}"
                      f" {key.created_at.strftime('%Y-%m-%d %H:%M:%SZ'):<20} {until:<20}"
                      f" {key.replaced_by or '-':<40} {key.label}")
        return 0
    except KeyCommandError as error:
        _say(f"error: {error}")
        return 1
    except asyncpg.UndefinedTableError:
        _say(f"error: no intake tables in schema {settings.schema_name!r}; run `duban migrate` first")
        return 1
    finally:
        await conn.close()


def register(subcommands) -> None:
    keys = subcommands.add_parser(
        "keys", help="department API keys for intake (DUBAN_DATABASE_URL)",
        description="Create, list, rotate and revoke the Bearer keys department systems post events with.")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="a new key for a department; prints its token once")
    create.add_argument("department", help="department code, e.g. market-regulation")
    create.add_argument("--label", default="", help="what the key is for, e.g. the sending system")
    listing = actions.add_parser("list", help="keys (without tokens)")
    listing.add_argument("--department", help="only this department's keys")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    rotate = actions.add_parser("rotate", help="a new key replacing KEY_ID; prints its token once")
    rotate.add_argument("key_id", help="the key's id as `duban keys list` shows it")
    rotate.add_argument("--grace-hours", type=hours(0), default=24.0,
                        help="how long the old key keeps working (default 24; 0 ends it now)")
    revoke = actions.add_parser("revoke", help="the key stops working now")
    revoke.add_argument("key_id")
    keys.set_defaults(handler=lambda args: asyncio.run(_run(args)))
