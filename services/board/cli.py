"""`duban bulletin`: issue the 督查通报 of a week on demand, as the board's form does, into a Word file."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import timedelta
from pathlib import Path

import jwt

from duban.auth import ensure_local_keys, issue_token
from duban.catalog import load_catalog
from duban.pg import create_pool
from services.board import bulletins
from services.board.clients import ReadApis, UpstreamRefused
from services.board.domain.bulletin import BadWeek, week_days
from services.board.settings import BoardSettings


def register(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "bulletin", help="issue a week's 督查通报 (Word) from the read APIs and archive it on the board",
        description="Asks the tracker, metrics and notifier (DUBAN_TRACKER_URL, DUBAN_METRICS_URL, DUBAN_NOTIFIER_URL)"
                    " as the district office, archives the bulletin in the board's schema (DUBAN_DATABASE_URL) and"
                    " writes the Word document.")
    parser.add_argument("--week", required=True, help="ISO week, e.g. 2021-W38")
    parser.add_argument("--out", type=Path, required=True, help="the .docx file to write")
    parser.add_argument("--token", help="a district-office bearer token (default: one signed with the local key pair"
                                        " under DUBAN_DATA_DIR, as `duban tokens issue` signs)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        week_days(args.week)
    except BadWeek as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    settings = BoardSettings()
    token = args.token or issue_token(ensure_local_keys(settings.data_dir)[0], settings, role="district-office",
                                      subject="duban bulletin", ttl=timedelta(minutes=10))
    try:
        issued = asyncio.run(_issue(settings, token, args.week))
    except UpstreamRefused as refusal:
        print(f"error: {refusal.service} answered {refusal.status}: {refusal.detail}", file=sys.stderr)
        return 1
    args.out.write_bytes(issued.docx)
    print(f"{issued.bulletin.title}: {args.out} (archived as bulletin {issued.id})")
    return 0


async def _issue(settings: BoardSettings, token: str, week: str) -> bulletins.Issued:
    apis = ReadApis.open(settings)
    pool = await create_pool(settings.database_url, settings.schema_name, max_size=2)
    # Who issued it, for the archive: the token's subject (the APIs verify the token itself).
    subject = jwt.decode(token, options={"verify_signature": False}).get("sub", "duban bulletin")
    try:
        return await bulletins.issue(apis=apis, token=token, issued_by=subject, catalog=load_catalog(), pool=pool,
                                     week=week, now=settings.clock())
    finally:
        await apis.close()
        await pool.close()
