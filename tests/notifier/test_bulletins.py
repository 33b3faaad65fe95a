"""POST /v1/bulletins: the board's 督查通报 stored and mailed to the district office's e-mail addresses with the
Word document attached, once per address however often it is handed over; who may hand one over."""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from docx import Document

from services.notifier.api import install, router
from tests.conftest import read_api, serving
from tests.notifier.conftest import CATALOG, HOURS, Clock, at, deliveries

pytestmark = pytest.mark.database

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
TITLE = "鼓楼区优化营商环境工作督查通报（2021年第38周）"
ROUTES = {
    "district-office": [{"channel": "email", "to": ["duban@gulou.gov.cn", "leader@gulou.gov.cn"]},
                        {"channel": "wecom", "webhook": "http://127.0.0.1:9/robot", "name": "office-robot"}],
    "market-regulation": [{"channel": "email", "to": ["scjgj@gulou.gov.cn"]}],
}


def word_document(title: str) -> bytes:
    document = Document()
    document.add_paragraph(title)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def handover(bulletin_id: int = 7, title: str = TITLE, document: bytes | None = None) -> dict:
    return {"bulletin_id": bulletin_id, "week": "2021-W38", "title": title,
            "summary": ["截至2021年09月24日 16:00，28项任务中，红灯2项。"], "html": f"<article><h1>{title}</h1></article>",
            "document": base64.b64encode(document or word_document(title)).decode("ascii")}


@pytest.fixture
async def notifier(pool, tokens, make_scheduler):
    """The notifier's API with the scheduler's routes and a clock on a Friday afternoon (office hours)."""
    scheduler = await make_scheduler(ROUTES)
    clock = Clock()
    clock.now = at("2021-09-24 16:00")
    app = install(read_api(router, pool, tokens), CATALOG, HOURS, scheduler.settings, clock, scheduler.routes)
    async with serving(app) as url, httpx.AsyncClient(
            base_url=url, headers=tokens.headers(subject="board:schedule")) as board:
        yield board, scheduler, clock


async def test_a_bulletin_is_mailed_once_to_each_district_office_address_with_its_word_document(
        notifier, pool, smtp_server):
    board, scheduler, clock = notifier
    _, mailbox = smtp_server
    body = handover()
    first = await board.post("/v1/bulletins", json=body)
    assert first.status_code == 201, first.text
    receipt = first.json()
    assert receipt["received_by"] == "board:schedule" and receipt["week"] == "2021-W38"
    # E-mail addresses of the district office only: not its robot, not another department.
    assert sorted(d["recipient"] for d in receipt["deliveries"]) == ["email:duban@gulou.gov.cn",
                                                                      "email:leader@gulou.gov.cn"]
    assert {d["status"] for d in receipt["deliveries"]} == {"pending"}

    await scheduler.run_once(pool, clock.now)
    again = await board.post("/v1/bulletins", json=body)  # the board retrying after a lost answer
    assert again.status_code == 200
    assert {d["status"] for d in again.json()["deliveries"]} == {"sent"}
    assert again.json()["received_at"] == receipt["received_at"]
    await scheduler.run_once(pool, clock.now)

    assert sorted(rcpt for rcpts, _ in mailbox.messages for rcpt in rcpts) == ["duban@gulou.gov.cn",
                                                                                 "leader@gulou.gov.cn"]
    assert len(await deliveries(pool, kind="bulletin")) == 2
    for _, message in mailbox.messages:
        assert message["Subject"] == TITLE
        assert "红灯2项" in message.get_body(("plain",)).get_content()
        assert f"<h1>{TITLE}</h1>" in message.get_body(("html",)).get_content()
        [attachment] = list(message.iter_attachments())
        assert attachment.get_content_type() == DOCX
        assert attachment.get_filename() == f"{TITLE}.docx"
        paragraphs = [p.text for p in Document(io.BytesIO(attachment.get_content())).paragraphs]
        assert TITLE in paragraphs
    for raw in mailbox.raw:  # the Chinese filename as RFC 2231 parameters (filename*0*=utf-8''%E9…), all ASCII
        assert b"filename*0*=utf-8''%E9%BC%93" in raw and raw.isascii()


async def test_only_the_district_office_hands_over_and_bad_input_is_refused(notifier, tokens, pool):
    board, _, _ = notifier
    for headers in (tokens.headers(department="market-regulation"), tokens.headers("viewer")):
        refused = await board.post("/v1/bulletins", json=handover(), headers=headers)
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
    assert (await board.post("/v1/bulletins", json=handover(), headers={"authorization": ""})).status_code == 401

    not_word = await board.post("/v1/bulletins", json=handover(document=b"%PDF-1.7 not a docx"))
    assert not_word.status_code == 422 and not_word.json()["type"].endswith("bad-document")
    bad_week = await board.post("/v1/bulletins", json={**handover(), "week": "2021-38"})
    assert bad_week.status_code == 422 and bad_week.headers["content-type"] == "application/problem+json"
    assert await deliveries(pool, kind="bulletin") == []

    assert (await board.post("/v1/bulletins", json=handover())).status_code == 201
    other = await board.post("/v1/bulletins", json=handover(title="另一份通报"))
    assert other.status_code == 409 and other.json()["type"].endswith("bulletin-conflict")
