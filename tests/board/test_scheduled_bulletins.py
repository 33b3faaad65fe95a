"""The automatic 督查通报 and its mail, against the real tracker and metrics APIs, the real notifier API and
scheduler and a real SMTP server (PostgreSQL throughout): due on Friday 16:00 and not before, one a week
whatever the number of boards, a holiday Friday, the notifier down, slow or losing its answer, a board stopped
mid-hand-off, every issued bulletin mailed once, and no board transaction open while another service answers."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import asyncpg
import httpx
import jwt
import pytest
import structlog
from docx import Document
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from duban.catalog import load_catalog
from duban.pg import create_pool
from duban.workcal import WorkingCalendar
from services.board import bulletins, scheduled
from services.board.app import create_app
from services.board.clients import ReadApis, UpstreamRefused
from services.board.domain.schedule import IssueSchedule
from services.board.scheduled import BulletinJob, handoff_lease_for, token_from
from services.board.settings import BoardSettings
from services.notifier.api import install, router
from services.notifier.scheduler import Scheduler
from tests.auth.conftest import service_api
from tests.conftest import Tokens, at, free_port, migrated_schema, read_api, schema_pool, serving
from tests.notifier.conftest import CATALOG, HOURS, Clock, make_scheduler, smtp_server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.database

FRIDAY_AT_4 = at("2021-09-24 16:00")
OFFICE = ["duban@gulou.gov.cn", "leader@gulou.gov.cn"]
ROUTES = {"district-office": [{"channel": "email", "to": OFFICE}]}


@dataclass
class Stack:
    settings: BoardSettings
    pool: asyncpg.Pool  # the board's schema
    notifier_pool: asyncpg.Pool
    notifier: Scheduler
    notifier_clock: Clock
    notifier_port: int
    tokens: Tokens

    @contextlib.asynccontextmanager
    async def notifier_up(self, gate: Gate | None = None) -> AsyncIterator[None]:
        """The notifier's API where the board expects it (behind `gate`); stopped again when the block ends."""
        app = install(read_api(router, self.notifier_pool, self.tokens), CATALOG, HOURS, self.notifier.settings,
                      self.notifier_clock, self.notifier.routes)
        async with serving(app if gate is None else gate.around(app), port=self.notifier_port):
            try:
                yield
            finally:
                if gate is not None:
                    gate.opened.set()  # the server stops once the requests it holds are answered

    @contextlib.asynccontextmanager
    async def board(self) -> AsyncIterator[BulletinJob]:
        """One board replica's bulletin job: a pool and HTTP client of its own."""
        apis, pool = ReadApis.open(self.settings), await create_pool(self.settings.database_url,
                                                                     self.settings.schema_name, max_size=2)
        try:
            yield BulletinJob(apis, pool, load_catalog(), WorkingCalendar(), IssueSchedule(5, time(16, 0)),
                              token_from(self.settings.service_token_file),
                              handoff_lease_for(self.settings.upstream_timeout_s))
        finally:
            await apis.close()
            await pool.close()

    async def bulletins(self) -> list[asyncpg.Record]:
        return await self.pool.fetch("SELECT id, week, issued_by, automatic, handed_over_at, handover_error, docx"
                                     " FROM bulletins ORDER BY id")

    async def mails(self) -> None:
        await self.notifier.run_once(self.notifier_pool, self.notifier_clock.now)

    async def board_transactions_waiting(self) -> list[asyncpg.Record]:
        """The board connections that sit in an open transaction, waiting on their client (pg_stat_activity)."""
        return await self.pool.fetch(
            "SELECT pid, query FROM pg_stat_activity WHERE application_name = $1"
            " AND state IN ('idle in transaction', 'idle in transaction (aborted)')",
            f"duban-{self.settings.schema_name}")


class Gate:
    """In front of the notifier's real API: requests to `path` wait until the gate opens (each one counted as it
    arrives), and the first `answers_lost` of them reach the notifier but their answers do not come back, as
    when a proxy drops the connection: the client sees a 502."""

    def __init__(self, path: str, *, answers_lost: int = 0) -> None:
        self.path, self.answers_lost = path, answers_lost
        self.held = 0
        self.opened = asyncio.Event()

    def around(self, app):
        async def gated(scope, receive, send):
            if scope["type"] != "http" or scope["path"] != self.path:
                return await app(scope, receive, send)
            self.held += 1
            await self.opened.wait()
            if self.answers_lost == 0:
                return await app(scope, receive, send)
            self.answers_lost -= 1

            async def nowhere(message) -> None:
                pass

            await app(scope, receive, nowhere)
            await send({"type": "http.response.start", "status": 502, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"answer lost"})

        return gated

    async def until_held(self, count: int, *tasks: asyncio.Task) -> None:
        """Until `count` requests wait at the gate; a task that ends before is a failure (it did not get there)."""
        while self.held < count:
            assert not any(task.done() for task in tasks), [task.result() for task in tasks if task.done()]
            await asyncio.sleep(0.01)


@pytest.fixture
async def stack(database_url, kafka_bootstrap, tokens, make_scheduler, tmp_path: Path) -> AsyncIterator[Stack]:
    async with contextlib.AsyncExitStack() as exits:
        enter = exits.enter_async_context
        apis = {name: await enter(service_api(name, database_url, kafka_bootstrap, tokens))
                for name in ("tracker", "metrics")}
        notifier_pool = await enter(schema_pool(database_url, await enter(migrated_schema(database_url, "notifier"))))
        board_schema = await enter(migrated_schema(database_url, "board"))
        token_file = tmp_path / "board.token"
        token_file.write_text(tokens.issue(subject="board:schedule"), encoding="ascii")
        port = free_port()
        settings = BoardSettings(auth_public_key_file=str(tokens.public_key), log_json=False, database_url=database_url,
                                 schema_name=board_schema, tracker_url=apis["tracker"].url,
                                 metrics_url=apis["metrics"].url, notifier_url=f"http://127.0.0.1:{port}",
                                 service_token_file=token_file)
        clock = Clock()
        clock.now = FRIDAY_AT_4
        yield Stack(settings, await enter(schema_pool(database_url, board_schema)), notifier_pool,
                    await make_scheduler(ROUTES), clock, port, tokens)


def title_of(docx: bytes) -> str:
    return Document(io.BytesIO(docx)).paragraphs[0].text


async def test_the_bulletin_is_issued_on_friday_at_16_not_before_and_mailed_once_to_each_address(stack, smtp_server):
    _, mailbox = smtp_server
    async with stack.notifier_up(), stack.board() as board:
        await board.round(at("2021-09-24 15:59"))
        assert await stack.bulletins() == []
        await board.round(FRIDAY_AT_4)
        [issued] = await stack.bulletins()
        assert (issued["week"], issued["issued_by"], issued["automatic"]) == ("2021-W38", "schedule", True)
        assert issued["handed_over_at"] == FRIDAY_AT_4
        for later in ("2021-09-24 17:00", "2021-09-26 23:00"):
            await board.round(at(later))
        assert len(await stack.bulletins()) == 1
        await stack.mails()
        await stack.mails()
    assert sorted(rcpt for rcpts, _ in mailbox.messages for rcpt in rcpts) == OFFICE
    title = "鼓楼区优化营商环境工作督查通报（2021年第38周）"
    for _, message in mailbox.messages:
        [attachment] = message.iter_attachments()
        assert attachment.get_filename() == f"{title}.docx"
        assert title_of(attachment.get_content()) == title


async def test_two_boards_issue_one_bulletin_a_week_and_a_holiday_friday_moves_it_to_thursday(stack):
    async with stack.notifier_up(), stack.board() as one, stack.board() as other:
        for moment in ("2021-09-24 16:00", "2021-09-24 16:00:01", "2021-09-25 10:00"):
            await asyncio.gather(one.round(at(moment)), other.round(at(moment)))
        # National Day week: Friday 1 October is off, so Thursday 30 September at 16:00.
        await asyncio.gather(one.round(at("2021-09-30 15:59")), other.round(at("2021-09-30 15:59")))
        assert [b["week"] for b in await stack.bulletins()] == ["2021-W38"]
        await asyncio.gather(one.round(at("2021-09-30 16:00")), other.round(at("2021-09-30 16:00")))
        await asyncio.gather(one.round(at("2021-10-01 16:00")), other.round(at("2021-10-01 16:00")))
    issued = await stack.bulletins()
    assert [(b["week"], b["automatic"]) for b in issued] == [("2021-W38", True), ("2021-W39", True)]
    assert all(b["handed_over_at"] is not None for b in issued)


async def test_a_notifier_down_at_issue_time_gets_every_bulletin_when_it_is_back(stack, smtp_server):
    _, mailbox = smtp_server
    async with stack.board() as board:
        # Down at 16:00: the bulletin cannot even be assembled (the escalations are the notifier's): next round.
        with pytest.raises(UpstreamRefused):
            await board.round(FRIDAY_AT_4)
        assert await stack.bulletins() == []
        token = stack.settings.service_token_file.read_text()
        async with stack.notifier_up():
            await board.issue_due(token, at("2021-09-24 16:01"))
            # The district office issues last week's by hand too: every issued bulletin is mailed.
            await bulletins.issue(apis=board.apis, token=token, issued_by="督查室 李科长", catalog=board.catalog,
                                  pool=board.pool, week="2021-W37", now=at("2021-09-24 16:02"))
        # Gone again before the hand-off: both wait, with the reason, and are tried again each round.
        assert await board.hand_over(token, at("2021-09-24 16:03")) == 0
        waiting = await stack.bulletins()
        assert [(b["week"], b["handed_over_at"]) for b in waiting] == [("2021-W38", None), ("2021-W37", None)]
        assert all(b["handover_error"].startswith("502") for b in waiting)
        async with stack.notifier_up():
            await board.round(at("2021-09-24 16:30"))
            await stack.mails()
            await board.round(at("2021-09-24 16:31"))
            await stack.mails()
    issued = await stack.bulletins()
    assert [(b["week"], b["issued_by"]) for b in issued] == [("2021-W38", "schedule"), ("2021-W37", "督查室 李科长")]
    assert all(b["handed_over_at"] == at("2021-09-24 16:30") and b["handover_error"] is None for b in issued)
    titles = sorted(title_of(next(message.iter_attachments()).get_content()) for _, message in mailbox.messages)
    assert titles == ["鼓楼区优化营商环境工作督查通报（2021年第37周）"] * 2 + ["鼓楼区优化营商环境工作督查通报（2021年第38周）"] * 2


async def test_two_board_servers_on_a_fixed_clock_list_one_automatic_bulletin(stack, tokens):
    settings = stack.settings.model_copy(update={"clock_start": FRIDAY_AT_4, "clock_speed": 0,
                                                 "bulletin_interval_s": 0.1})
    async with stack.notifier_up(), serving(create_app(settings), lifespan="on") as url, \
            serving(create_app(settings), lifespan="on"), \
            httpx.AsyncClient(base_url=url, headers=tokens.headers("viewer")) as reader:
        for _ in range(100):
            issued = await stack.bulletins()
            if issued and issued[0]["handed_over_at"] is not None:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # more rounds of both boards
        listing = (await reader.get("/bulletins")).text
    [bulletin] = await stack.bulletins()
    assert bulletin["automatic"] and bulletin["handed_over_at"] == FRIDAY_AT_4
    assert f'data-bulletin="{bulletin["id"]}"' in listing and "定时自动签发" in listing and "已交通知服务发送" in listing


async def test_no_board_transaction_is_open_while_the_apis_assemble_the_bulletin_and_one_of_two_archives_it(stack):
    gate = Gate("/v1/escalations")
    async with stack.notifier_up(gate), stack.board() as one, stack.board() as other:
        token = stack.settings.service_token_file.read_text()
        both = [asyncio.create_task(board.issue_due(token, FRIDAY_AT_4)) for board in (one, other)]
        # Both replicas found the week without its bulletin and are assembling it, the notifier slow to answer.
        await gate.until_held(2, *both)
        assert await stack.board_transactions_waiting() == []
        gate.opened.set()
        issued = await asyncio.gather(*both)
    # The second insert met the week's unique index: that replica archived nothing and reported nothing wrong.
    [winner] = [result for result in issued if result is not None]
    [bulletin] = await stack.bulletins()
    assert (bulletin["id"], bulletin["week"], bulletin["automatic"]) == (winner.id, "2021-W38", True)


async def hand_off_held_at(gate: Gate, board: BulletinJob, token: str) -> asyncio.Task:
    """`board` issues the week's bulletin and starts handing it over; returns once the request waits at `gate`."""
    await board.issue_due(token, FRIDAY_AT_4)
    handing = asyncio.create_task(board.hand_over(token, at("2021-09-24 16:01")))
    await gate.until_held(1, handing)
    return handing


async def test_no_board_transaction_is_open_while_the_notifier_takes_a_bulletin_nor_does_another_board_post_it(stack):
    gate = Gate("/v1/bulletins")
    async with stack.notifier_up(gate), stack.board() as one, stack.board() as other:
        token = stack.settings.service_token_file.read_text()
        handing = await hand_off_held_at(gate, one, token)
        assert await stack.board_transactions_waiting() == []
        # The claim keeps the other board off the bulletin while the first one's request waits.
        assert await other.hand_over(token, at("2021-09-24 16:01")) == 0
        assert gate.held == 1
        gate.opened.set()
        assert await handing == 1
    [bulletin] = await stack.bulletins()
    assert bulletin["handed_over_at"] == at("2021-09-24 16:01")


async def test_a_board_stopped_mid_hand_off_leaves_the_bulletin_to_another_once_its_claim_runs_out(stack, smtp_server):
    _, mailbox = smtp_server
    gate = Gate("/v1/bulletins")
    async with stack.notifier_up(gate), stack.board() as one, stack.board() as other:
        token = stack.settings.service_token_file.read_text()
        stopped = await hand_off_held_at(gate, one, token)
        stopped.cancel()  # the board stops between its claim and the notifier's answer: nobody gives the claim up
        with contextlib.suppress(asyncio.CancelledError):
            await stopped
        assert await other.hand_over(token, at("2021-09-24 16:02")) == 0
        # A minute later on the database's clock the claim has run out.
        await stack.pool.execute("UPDATE bulletins SET handoff_claimed_until = now() - interval '1 second'")
        gate.opened.set()  # the stopped board's request, still at the gate, reaches the notifier too
        assert await other.hand_over(token, at("2021-09-24 16:03")) == 1
        await stack.mails()
        await stack.mails()
    [bulletin] = await stack.bulletins()
    assert bulletin["handed_over_at"] == at("2021-09-24 16:03")
    assert sorted(rcpt for rcpts, _ in mailbox.messages for rcpt in rcpts) == OFFICE


async def test_a_hand_off_whose_answer_was_lost_is_repeated_and_the_bulletin_mailed_once(stack, smtp_server):
    _, mailbox = smtp_server
    gate = Gate("/v1/bulletins", answers_lost=1)
    gate.opened.set()
    async with stack.notifier_up(gate), stack.board() as board:
        await board.round(FRIDAY_AT_4)
        [waiting] = await stack.bulletins()
        assert waiting["handed_over_at"] is None and waiting["handover_error"].startswith("502")
        await board.round(at("2021-09-24 16:01"))
        await stack.mails()
        await stack.mails()
    assert gate.held == 2
    [bulletin] = await stack.bulletins()
    assert (bulletin["handed_over_at"], bulletin["handover_error"]) == (at("2021-09-24 16:01"), None)
    assert sorted(rcpt for rcpts, _ in mailbox.messages for rcpt in rcpts) == OFFICE


async def test_an_expired_or_missing_service_token_shows_as_a_gauge_and_an_expired_one_as_an_error(stack, monkeypatch):
    service_token = stack.settings.service_token_file
    expired = stack.tokens.issue(subject="board:schedule", ttl=timedelta(hours=-1))
    expires_at = datetime.fromtimestamp(jwt.decode(expired, options={"verify_signature": False})["exp"], UTC)
    async with stack.notifier_up(), stack.board() as board:
        await bulletins.issue(apis=board.apis, token=stack.tokens.issue(), issued_by="督查室 李科长",
                              catalog=board.catalog, pool=board.pool, week="2021-W37", now=at("2021-09-24 15:00"))
        service_token.write_text(expired, encoding="ascii")
        with capture_logs() as logs:
            # A logger bound now, to the capture (the module's own may be bound to an earlier configuration).
            monkeypatch.setattr(scheduled, "log", structlog.get_logger(scheduled.__name__))
            await board.round(at("2021-09-24 15:01"))
        assert REGISTRY.get_sample_value("duban_board_service_token_expiry_timestamp_seconds") == \
            expires_at.timestamp()
        [refused] = [entry for entry in logs if entry["log_level"] == "error"]
        assert (refused["service"], refused["token_expires_at"]) == ("notifier", expires_at.isoformat())
        [waiting] = await stack.bulletins()
        assert waiting["handed_over_at"] is None and waiting["handover_error"].startswith("401")
        # Renewed: the next round hands it over.
        service_token.write_text(stack.tokens.issue(subject="board:schedule"), encoding="ascii")
        await board.round(at("2021-09-24 15:02"))
        assert REGISTRY.get_sample_value("duban_board_service_token_expiry_timestamp_seconds") > \
            expires_at.timestamp()
        # A file gone since: no token, and the gauge no longer shows the last one read.
        service_token.unlink()
        await board.round(at("2021-09-24 15:03"))
        assert REGISTRY.get_sample_value("duban_board_service_token_expiry_timestamp_seconds") == 0
    [bulletin] = await stack.bulletins()
    assert bulletin["handed_over_at"] == at("2021-09-24 15:02")
