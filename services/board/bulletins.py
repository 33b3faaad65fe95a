"""Issuing a 督查通报: ask the read APIs, assemble the week's bulletin, render it as Word and HTML, archive both
in the board's schema. The board's form and `duban bulletin` issue with the issuer's token; the schedule
(services/board/scheduled.py) with the board's service token, as issued_by "schedule"."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from duban.catalog import Catalog
from services.board import store
from services.board.clients import ReadApis
from services.board.documents import to_docx, to_html
from services.board.domain.bulletin import Bulletin, assemble
from services.board.domain.schedule import SCHEDULE


@dataclass(frozen=True)
class Issued:
    id: int
    bulletin: Bulletin
    docx: bytes


async def compose(apis: ReadApis, token: str, catalog: Catalog, week: str, now: datetime) -> Bulletin:
    tasks, indicators, escalations, extensions = await asyncio.gather(
        apis.tasks(token), apis.indicators(token, week[:4]), apis.escalations(token),
        apis.extensions(token, status="approved"))
    details = await apis.task_details(token, [t["id"] for t in tasks])
    return assemble(catalog, week=week, now=now, tasks=details, indicators=indicators, escalations=escalations,
                    extensions=extensions)


async def _archive(pool: asyncpg.Pool, bulletin: Bulletin, *, issued_by: str, now: datetime,
                   automatic: bool) -> Issued | None:
    docx = to_docx(bulletin)
    bulletin_id = await store.archive(pool, week=bulletin.week, as_of=bulletin.as_of, issued_at=now,
                                      issued_by=issued_by, title=bulletin.title, summary=bulletin.summary,
                                      html=to_html(bulletin), docx=docx, automatic=automatic)
    return None if bulletin_id is None else Issued(bulletin_id, bulletin, docx)


async def issue(*, apis: ReadApis, token: str, issued_by: str, catalog: Catalog, pool: asyncpg.Pool, week: str,
                now: datetime) -> Issued:
    bulletin = await compose(apis, token, catalog, week, now)
    issued = await _archive(pool, bulletin, issued_by=issued_by, now=now, automatic=False)
    assert issued is not None  # only an automatic bulletin meets the week's unique index
    return issued


async def issue_automatic(*, apis: ReadApis, token: str, catalog: Catalog, pool: asyncpg.Pool, week: str,
                          now: datetime) -> Issued | None:
    """The week's automatic bulletin, unless another replica issued it (None). The APIs are asked with no
    transaction open; replicas that pass the first check at once each assemble it, and the insert that finds the
    week taken (the unique index, waiting for the other's commit) archives nothing."""
    if await store.automatic_issued(pool, week):
        return None
    bulletin = await compose(apis, token, catalog, week, now)
    return await _archive(pool, bulletin, issued_by=SCHEDULE, now=now, automatic=True)


def handover_body(row: asyncpg.Record) -> dict:
    """What the notifier's POST /v1/bulletins takes: the archived document as sent, and what the mail says."""
    return {"bulletin_id": row["id"], "week": row["week"], "title": row["title"], "summary": list(row["summary"]),
            "html": row["html"], "document": base64.b64encode(row["docx"]).decode("ascii")}
