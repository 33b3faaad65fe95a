"""The board's background job: the week's 督查通报 at its scheduled time (docs/board.md), and the hand-off of
every issued bulletin, automatic or from the form, to the notifier until it is accepted. Safe on any number
of replicas, and no transaction is open while another service answers: a week's automatic bulletin is assembled
first and archived by one insert that the week's unique index lets through once, and a bulletin's hand-off is
claimed for a while with a committed UPDATE before it is posted (the notifier is idempotent on its id anyway)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import jwt
import structlog
from prometheus_client import Counter, Gauge

from duban.catalog import Catalog
from duban.pg import TRANSIENT_ERRORS
from duban.workcal import CalendarCoverageError, WorkingCalendar
from services.board import bulletins, store
from services.board.bulletins import Issued
from services.board.clients import ReadApis, UpstreamRefused
from services.board.domain.schedule import IssueSchedule

log = structlog.get_logger(__name__)

WAITING = Gauge("duban_board_bulletins_waiting", "Issued bulletins the notifier has not accepted yet")
AUTOMATIC = Counter("duban_board_bulletins_scheduled_total", "Bulletins this replica issued on the schedule")
CALENDAR_GAPS = Counter("duban_board_calendar_gaps_total",
                        "Rounds without an automatic bulletin because the working-day calendar lacks a year", ["year"])
TOKEN_EXPIRY = Gauge("duban_board_service_token_expiry_timestamp_seconds",
                     "When the board's service token (DUBAN_SERVICE_TOKEN_FILE) expires, from its exp claim;"
                     " 0 without a readable token that has one")
HANDOVER_BATCH = 10


def handoff_lease_for(upstream_timeout_s: float) -> timedelta:
    """Waiting for a pooled connection, connecting, sending and each read of the answer may each take the upstream
    timeout: six of them outlast a POST that does not trickle, and a board stopped mid-hand-off holds the bulletin
    no longer (a minute by default). A POST outlasting its claim may be repeated by another board, which the
    notifier answers as the first."""
    return timedelta(seconds=6 * upstream_timeout_s)


def token_expiry(token: str) -> datetime | None:
    """The token's `exp`, read without checking its signature: the board holds no key, the services check it."""
    try:
        expires = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return None
    return None if expires is None else datetime.fromtimestamp(expires, UTC)


def token_from(path: Path | None) -> Callable[[], str | None]:
    """The service token, read afresh each round so that a rotated Secret is picked up without a restart."""

    def read() -> str | None:
        if path is None:
            return None
        try:
            return path.read_text(encoding="ascii").strip() or None
        except OSError as error:
            log.error("cannot read the service token; no automatic bulletin, no hand-off", path=str(path),
                      error=str(error))
            return None

    return read


@dataclass
class BulletinJob:
    apis: ReadApis
    pool: asyncpg.Pool
    catalog: Catalog
    calendar: WorkingCalendar
    schedule: IssueSchedule | None  # None: no automatic bulletins, hand-offs only
    token: Callable[[], str | None]
    handoff_lease: timedelta  # how long a claim on a bulletin's hand-off keeps the other boards off it

    async def round(self, now: datetime) -> None:
        token = self.token()
        expiry = None if token is None else token_expiry(token)
        # 0 while there is no token with an expiry: a file unreadable since must not show the last one read.
        TOKEN_EXPIRY.set(0 if expiry is None else expiry.timestamp())
        if token is None:
            return
        try:
            await self.issue_due(token, now)
            await self.hand_over(token, now)
        except UpstreamRefused as refusal:
            if refusal.status != 401:
                raise
            # Every round meets the same refusal until the token is renewed; said as what to do, not as a retry.
            log.error("the service token was refused: no automatic bulletin, no hand-off until the file of"
                      " DUBAN_SERVICE_TOKEN_FILE holds a valid one", service=refusal.service, error=refusal.detail,
                      token_expires_at=None if expiry is None else expiry.isoformat())

    async def issue_due(self, token: str, now: datetime) -> Issued | None:
        if self.schedule is None:
            return None
        try:
            week = self.schedule.due(now, self.calendar.is_workday)
        except CalendarCoverageError as gap:
            # Surfaced, not guessed: no working day is assumed for a year the calendar lacks.
            CALENDAR_GAPS.labels(str(gap.year)).inc()
            log.error("working-day calendar lacks a year; no automatic bulletin", year=gap.year)
            return None
        if week is None:
            return None
        issued = await bulletins.issue_automatic(apis=self.apis, token=token, catalog=self.catalog, pool=self.pool,
                                                 week=week, now=now)
        if issued is not None:
            AUTOMATIC.inc()
            log.info("bulletin issued on schedule", week=week, bulletin=issued.id, at=now.isoformat())
        return issued

    async def hand_over(self, token: str, now: datetime) -> int:
        """Hand every bulletin not yet accepted to the notifier, up to HANDOVER_BATCH a round, one claim at a time
        and no transaction open while the notifier answers; returns how many it accepted."""
        accepted, passed = 0, []
        while len(passed) < HANDOVER_BATCH:
            row = await store.claim_handover(self.pool, self.handoff_lease, passed=passed)
            if row is None:
                break
            passed.append(row["id"])
            try:
                await self.apis.hand_over_bulletin(token, bulletins.handover_body(row))
            except UpstreamRefused as refusal:
                # Kept and tried again next round, whatever the refusal: a notifier down, or one whose token
                # or routes are being fixed, takes it once it can.
                await store.handover_failed(self.pool, row["id"], row["claim"], f"{refusal.status} {refusal.detail}")
                if refusal.status == 401:
                    raise  # the token, not this bulletin: the others would meet the same
                log.warning("bulletin not handed over; will retry", bulletin=row["id"], week=row["week"],
                            status=refusal.status, error=refusal.detail)
                continue
            await store.handed_over(self.pool, row["id"], now)
            accepted += 1
            log.info("bulletin handed over to the notifier", bulletin=row["id"], week=row["week"])
        WAITING.set(await store.waiting_handovers(self.pool))
        return accepted

    async def run(self, interval_s: float, clock: Callable[[], datetime]) -> None:
        """A round every `interval_s`; a failed one is logged and the next starts over (each step is idempotent)."""
        while True:
            try:
                await self.round(clock())
            except (UpstreamRefused, *TRANSIENT_ERRORS) as error:
                log.warning("bulletin round failed; retrying at the next one", error=f"{type(error).__name__}: {error}")
            await asyncio.sleep(interval_s)
