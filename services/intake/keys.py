"""Department API keys: one Bearer token per department system, stored only as a hash.

A token is `dbk_<department>_<43 characters>`: 256 random bits (secrets.token_urlsafe) after a
visible prefix, so a leaked token in a log or a config file says at once whose it is, and
`dbk_<department>_<first 8 characters>` identifies the key in listings without revealing it.
Intake keeps the SHA-256 of the token: a slow password hash (bcrypt, argon2) exists to make
guessing low-entropy passwords expensive; nobody can guess 256 random bits, so it would only add
tens of milliseconds of CPU to every request (docs/decisions/006-intake-authentication.md).

`duban keys create|list|rotate|revoke` manages them; the token is printed once, at creation.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import secrets
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import asyncpg

from duban.catalog import load_catalog
from services.intake import store
from services.intake.settings import IntakeSettings

_TOKEN = re.compile(r"dbk_[a-z0-9]+(?:-[a-z0-9]+)*_[A-Za-z0-9_-]{43}")
_KEY_ID_LENGTH = 8


class KeyCommandError(LookupError):
    """A key command that cannot be carried out (unknown department or key)."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    department: str
    label: str
    created_at: datetime
    revoked_at: datetime | None
    replaced_by: str | None

    def status(self, now: datetime) -> str:
        if self.revoked_at is None:
            return "active"
        return "expiring" if self.revoked_at > now else "revoked"


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def looks_like_token(token: str) -> bool:
    """Shape check before any database lookup: garbage is refused without a query."""
    return _TOKEN.fullmatch(token) is not None


def _new_token(department: str) -> tuple[str, str]:
    secret = secrets.token_urlsafe(32)
    return f"dbk_{department}_{secret[:_KEY_ID_LENGTH]}", f"dbk_{department}_{secret}"


def _check_department(code: str) -> None:
    catalog = load_catalog()
    try:
        department = catalog.department(code)
    except KeyError:
        raise KeyCommandError(f"no department {code!r} in the plan catalog (see `duban catalog`)") from None
    if department.kind == "collective":
        raise KeyCommandError(f"{code} is a collective ({department.name}); its member units send events with keys of their own")


async def create_key(conn: asyncpg.Connection, department: str, label: str = "") -> tuple[ApiKey, str]:
    """A new key for the department and its token (which is not stored and cannot be shown again)."""
    _check_department(department)
    key_id, token = _new_token(department)
    return ApiKey(**await store.insert_key(conn, key_id, department, token_hash(token), label)), token


async def authenticate(conn: asyncpg.Connection | asyncpg.Pool, token: str) -> str | None:
    """The department a valid (not revoked, not expired) token belongs to, else None."""
    if not looks_like_token(token):
        return None
    return await store.department_of_token(conn, token_hash(token))


async def list_keys(conn: asyncpg.Connection, department: str | None = None, *,
                    include_revoked: bool = False) -> list[ApiKey]:
    return [ApiKey(**row) for row in await store.keys_of(conn, department, include_revoked)]


async def rotate_key(conn: asyncpg.Connection, key_id: str, grace: timedelta) -> tuple[ApiKey, str, ApiKey]:
    """A new key for the same department; the old one stays valid for `grace`, so the department
    system can switch over without a gap. Returns (new key, its token, old key)."""
    async with conn.transaction():
        old = await store.lock_key(conn, key_id)
        if old is None or (old["revoked_at"] is not None and old["revoked_at"] <= datetime.now(timezone.utc)):
            raise KeyCommandError(f"no valid key {key_id!r}")
        new, token = await create_key(conn, old["department"], old["label"])
        updated = await store.revoke_key(conn, key_id, grace, new.key_id)
    return new, token, ApiKey(**updated)


async def revoke_key(conn: asyncpg.Connection, key_id: str) -> ApiKey:
    """The key stops working now (a revoked key's next request gets 401)."""
    row = await store.revoke_key(conn, key_id)
    if row is None:
        raise KeyCommandError(f"no key {key_id!r}")
    return ApiKey(**row)


async def provision_keys(database_url: str, schema: str, departments: set[str], label: str) -> dict[str, str]:
    """Fresh keys labelled `label` for each department, revoking the earlier keys of that label
    (the demo feed of `duban run` gets new ones on every start). Returns department → token."""
    conn = await _connect(database_url, schema)
    try:
        async with conn.transaction():
            await store.revoke_labelled(conn, label)
            return {code: (await create_key(conn, code, label))[1] for code in sorted(departments)}
    finally:
        await conn.close()


async def _connect(database_url: str, schema: str) -> asyncpg.Connection:
    return await asyncpg.connect(database_url, server_settings={"search_path": schema, "timezone": "UTC"})


# -- duban keys -------------------------------------------------------------------------------------


def _say(text: str) -> None:
    print(text, file=sys.stderr)


async def _run(args: argparse.Namespace) -> int:
    settings = IntakeSettings()
    conn = await _connect(settings.database_url, settings.schema_name)
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


def _hours(text: str) -> float:
    hours = float(text)
    if hours < 0:
        raise argparse.ArgumentTypeError("hours cannot be negative")
    return hours


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
    rotate.add_argument("--grace-hours", type=_hours, default=24.0,
                        help="how long the old key keeps working (default 24; 0 ends it now)")
    revoke = actions.add_parser("revoke", help="the key stops working now")
    revoke.add_argument("key_id")
    keys.set_defaults(handler=lambda args: asyncio.run(_run(args)))
