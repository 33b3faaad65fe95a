"""Issuing a 督查通报: ask the read APIs (with the issuer's token), assemble the week's bulletin, render it as
Word and HTML, archive both in the board's schema. The board's form and `duban bulletin` both come here."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from duban.catalog import Catalog
from services.board import store
from services.board.clients import ReadApis
from services.board.documents import to_docx, to_html
from services.board.domain.bulletin import Bulletin, assemble


@dataclass(frozen=True)
class Issued:
    id: int
    bulletin: Bulletin
    docx: bytes


async def issue(*, apis: ReadApis, token: str, issued_by: str, catalog: Catalog, pool: asyncpg.Pool, week: str,
                now: datetime) -> Issued:
    tasks, indicators, escalations, extensions = await asyncio.gather(
        apis.tasks(token), apis.indicators(token, week[:4]), apis.escalations(token),
        apis.extensions(token, status="approved"))
    details = await apis.task_details(token, [t["id"] for t in tasks])
    bulletin = assemble(catalog, week=week, now=now, tasks=details, indicators=indicators, escalations=escalations,
                        extensions=extensions)
    docx = to_docx(bulletin)
    async with pool.acquire() as conn:
        bulletin_id = await store.archive(conn, week=week, as_of=bulletin.as_of, issued_at=now, issued_by=issued_by,
                                          title=bulletin.title, html=to_html(bulletin), docx=docx)
    return Issued(bulletin_id, bulletin, docx)
