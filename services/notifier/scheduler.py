"""The scheduled side of the notifier: escalations advance as working days pass, and due notices go
out in office hours, within the robots' rate limits, with retries.

Safe on any number of replicas: each escalation is claimed with `SELECT … FOR UPDATE SKIP LOCKED`
inside the transaction that acts on it; a notice is planned at most once per (item, level, window,
channel, recipient) by the deliveries table's unique key, and sent by the replica holding its claim,
with no transaction open during the send (decision 015)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import asyncpg
import httpx
import structlog
from prometheus_client import Counter, Gauge

from duban.catalog import Catalog
from duban.pg import TRANSIENT_ERRORS, transient
from duban.workcal import CalendarCoverageError, OfficeHours
from services.notifier import store
from services.notifier.channels import RATE_LIMITED, Channel, DeliveryError, make_channels
from services.notifier.digests import Digests
from services.notifier.domain.escalation import Policy, addressees, evaluate
from services.notifier.domain.messages import BulletinNotice, Notice, build_notice, notice_from_json
from services.notifier.routes import Routes, Target
from services.notifier.settings import NotifierSettings

log = structlog.get_logger(__name__)

DELIVERIES = Counter("duban_notifier_deliveries_total", "Delivery attempts and their outcome",
                     ["channel", "outcome"])  # sent, retry, dead, cancelled, rate_limited
QUEUE_DEPTH = Gauge("duban_notifier_queue_depth", "Notices waiting to be sent", ["channel"])
DEAD = Gauge("duban_notifier_dead_deliveries", "Notices given up on (see GET /v1/deliveries?status=dead)", ["channel"])
OPEN = Gauge("duban_notifier_escalations_open", "Open escalations being pursued, by level", ["level"])
AWAITING_VERIFICATION = Gauge("duban_notifier_escalations_awaiting_verification",
                              "Open escalations paused while their item's done awaits verification, by level", ["level"])
UNROUTED = Counter("duban_notifier_unrouted_total", "Notices for a department with no address for the level",
                   ["department", "level"])
CALENDAR_GAPS = Counter("duban_notifier_calendar_gaps_total",
                        "Escalations not evaluated because the working-day calendar lacks a year", ["year"])

CHANNELS = ("wecom", "dingtalk", "email", "webhook")
CLAIM_BATCH = 100
# An escalation the calendar cannot evaluate is looked at again this much later (the gap is surfaced meanwhile).
CALENDAR_RETRY = timedelta(hours=1)


def sendable_from(hours: OfficeHours, settings: NotifierSettings, moment: datetime) -> datetime:
    """The first instant at or after `moment` a notice may go out: office time, unless configured otherwise."""
    return moment if settings.deliver_outside_office_hours else hours.next_office_time(moment)


def delivery_key(row: asyncpg.Record) -> str:
    # Escalations keep the key they always had, so a notice retried across an upgrade keeps its ids.
    prefix = "" if row["kind"] == "escalation" else f"{row['kind']}/"
    return f"{prefix}{row['item']}/{row['level']}/{row['window_start']}/{row['channel']}/{row['recipient']}"


@dataclass
class Scheduler:
    catalog: Catalog
    hours: OfficeHours
    routes: Routes
    channels: dict[str, Channel]
    settings: NotifierSettings

    @property
    def policy(self) -> Policy:
        s = self.settings
        return Policy(s.escalation_red_days_to_top, s.escalation_unacknowledged_days_to_top,
                      s.escalation_repeat_every_days)

    def __post_init__(self) -> None:
        self.digests = Digests(self.catalog, self.hours, self.routes, self.settings)

    def sendable_from(self, moment: datetime) -> datetime:
        return sendable_from(self.hours, self.settings, moment)

    async def run_once(self, pool: asyncpg.Pool, now: datetime) -> None:
        await self.evaluate_due(pool, now)
        try:
            await self.digests.plan(pool, now)
        except CalendarCoverageError as exc:
            # Surfaced, not guessed: no working day is assumed for a year the calendar lacks.
            CALENDAR_GAPS.labels(str(exc.year)).inc()
            log.error("working-day calendar lacks a year; no digests", year=exc.year)
        await self.deliver_due(pool, now)
        await self.refresh_gauges(pool)

    # -- escalations -----------------------------------------------------------------------------

    async def evaluate_due(self, pool: asyncpg.Pool, now: datetime) -> int:
        """Advance every escalation whose next check is due; plan the notices their windows call for."""
        evaluated = 0
        while True:
            async with pool.acquire() as conn, conn.transaction():
                rows = await store.claim_due_escalations(conn, now, CLAIM_BATCH)
                for row in rows:
                    await self._evaluate(conn, row, now)
            evaluated += len(rows)
            if len(rows) < CLAIM_BATCH:
                return evaluated

    async def _evaluate(self, conn: asyncpg.Connection, row: asyncpg.Record, now: datetime) -> None:
        try:
            ev = evaluate(store.ladder_of(row), now, self.hours.calendar, self.policy)
            not_before = self.sendable_from(now)
        except CalendarCoverageError as exc:
            CALENDAR_GAPS.labels(str(exc.year)).inc()
            log.error("working-day calendar lacks a year; escalation not evaluated", item=row["item"], year=exc.year)
            await store.update_ladder(conn, row["id"], store.ladder_of(row), deadline=row["deadline"],
                                      next_check_at=now + CALENDAR_RETRY, before=store.ladder_of(row))
            return
        await store.update_ladder(conn, row["id"], ev.ladder, deadline=row["deadline"], next_check_at=ev.next_check,
                                  before=store.ladder_of(row))
        if ev.window is None:
            return
        task = self.catalog.task(row["task_id"])
        departments = addressees(ev.ladder.level, task, self.settings.top_department)
        await store.set_addressees(conn, row["id"], list(departments))
        notice = build_notice(self.catalog, escalation_id=row["id"], item=row["item"], task_id=task.id,
                              light=ev.ladder.light, level=ev.ladder.level, deadline=row["deadline"],
                              departments=list(departments))
        reached, unrouted = self.routes.plan(departments, ev.ladder.level)
        for target, codes in reached.items():
            if await store.plan_delivery(conn, escalation_id=row["id"], item=row["item"], level=ev.ladder.level,
                                         window=ev.window, channel=target.channel, recipient=target.recipient,
                                         departments=codes, notice=notice.as_json(), not_before=not_before, now=now):
                log.info("notice planned", item=row["item"], level=ev.ladder.level, window=str(ev.window),
                         recipient=target.recipient, not_before=not_before.isoformat())
        for code in unrouted:
            UNROUTED.labels(code, str(ev.ladder.level)).inc()
            log.warning("no address for a department; notice not sent", department=code, item=row["item"],
                        level=ev.ladder.level, window=str(ev.window))

    # -- deliveries ------------------------------------------------------------------------------

    @property
    def lease(self) -> timedelta:
        """How long a claimed delivery is left to its sender. The send is cut at the channel timeout; the
        rest covers waiting for a pooled connection and recording the outcome. In real time (decision 026)."""
        return timedelta(seconds=2 * self.settings.delivery_timeout_s)

    async def deliver_due(self, pool: asyncpg.Pool, now: datetime) -> int:
        """Send every due notice; returns how many were looked at. Each is claimed in a short transaction,
        sent with none open, and its outcome recorded in another (decision 015)."""
        handled = 0
        while True:
            async with pool.acquire() as conn, conn.transaction():
                row = await store.due_delivery(conn, now)
                if row is None:
                    return handled
                claimed = await self._claim(conn, row, now)
            handled += 1
            if claimed is not None:
                await self._send(pool, claimed, now)

    async def _claim(self, conn: asyncpg.Connection, row: asyncpg.Record, now: datetime) -> Claimed | None:
        """Settle a due notice that is not to be sent now (moot, outside office hours, no route, the robot's
        minute spent); otherwise claim it and return what to send."""
        channel = row["channel"]
        if moot := ("resolved" if row["resolved_at"] is not None else "acknowledged" if is_acknowledged_row(row, now)
                    else "awaiting verification" if row["awaiting_verification_since"] is not None else None):
            await store.finish(conn, row["id"], "cancelled", now, moot)
            DELIVERIES.labels(channel, "cancelled").inc()
            return None
        if (sendable := self.sendable_from(now)) > now:
            await store.postpone(conn, row["id"], sendable)
            return None
        target = self.routes.target(row["recipient"])
        if target is None:
            await store.finish(conn, row["id"], "dead", now, f"no route for {row['recipient']} any more")
            DELIVERIES.labels(channel, "dead").inc()
            return None
        if row["attempts"] >= self.settings.delivery_max_attempts:
            # Every attempt is counted when claimed: these sends started and none came back (the sender
            # stopped or outlived its lease each time). A notice that stops its sender is not tried forever.
            await self._give_up(conn, row, now, f"{row['attempts']} sends started and none finished")
            return None
        try:
            async with conn.transaction():  # a savepoint: a notice that cannot be read fails alone
                notice = await notice_of(conn, row)
        except Exception as exc:  # noqa: BLE001 - unless the database's, the stored notice is at fault
            if transient(exc):
                raise
            await self._give_up(conn, row, now, f"the stored notice cannot be read: {type(exc).__name__}: {exc}")
            return None
        if channel in RATE_LIMITED:
            free_at = await store.robot_slot(conn, row["recipient"], now, self.settings.robot_messages_per_minute)
            if free_at is not None:
                await store.postpone(conn, row["id"], self.sendable_from(free_at))
                DELIVERIES.labels(channel, "rate_limited").inc()
                return None
        return Claimed(row, target, notice, await store.claim(conn, row["id"], self.lease))

    async def _give_up(self, conn: asyncpg.Connection, row: asyncpg.Record, now: datetime, why: str) -> None:
        await store.finish(conn, row["id"], "dead", now, why)
        DELIVERIES.labels(row["channel"], "dead").inc()
        log.error("notice given up", recipient=row["recipient"], attempts=row["attempts"], error=why)

    async def _send(self, pool: asyncpg.Pool, claimed: Claimed, now: datetime) -> None:
        row, timeout = claimed.row, self.settings.delivery_timeout_s
        failure = None
        try:
            # The channels' own timeouts bound each step of a send; this bounds the whole, within the lease.
            async with asyncio.timeout(timeout):
                await self.channels[row["channel"]].send(claimed.target, claimed.notice, delivery_key(row))
        except DeliveryError as exc:
            failure = exc
        except TimeoutError:
            failure = DeliveryError(f"not sent within {timeout:g} s", transient=True)
        status, retry_at = self._after_attempt(row, now, failure)
        error = None if failure is None else str(failure)
        async with pool.acquire() as conn, conn.transaction():
            recorded = await store.record_attempt(conn, row["id"], claimed.claim, status=status, error=error,
                                                  not_before=retry_at, now=now)
        if not recorded:
            log.warning("claim lost before the outcome was recorded; another replica took the notice over",
                        item=row["item"], recipient=row["recipient"], error=error)
            return
        attempts = row["attempts"] + 1
        if status == "sent":
            log.info("notice sent", item=row["item"], level=row["level"], recipient=row["recipient"])
        elif status == "pending":
            log.warning("notice not delivered; will retry", recipient=row["recipient"], attempt=attempts,
                        retry_at=retry_at.isoformat(), error=error)
        else:
            log.error("notice given up", recipient=row["recipient"], attempts=attempts, error=error)
        DELIVERIES.labels(row["channel"], "retry" if status == "pending" else status).inc()

    def _after_attempt(self, row: asyncpg.Record, now: datetime,
                       failure: DeliveryError | None) -> tuple[str, datetime | None]:
        """The delivery's status after this attempt, and when it is tried again if it is to be."""
        if failure is None:
            return "sent", None
        s, attempts = self.settings, row["attempts"] + 1
        if failure.transient and attempts < s.delivery_max_attempts:
            wait = min(s.delivery_retry_initial_s * 2 ** (attempts - 1), s.delivery_retry_max_s)
            return "pending", self.sendable_from(now + timedelta(seconds=wait))
        return "dead", None

    async def refresh_gauges(self, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            levels, waiting = await store.counts(conn)
        by_level = {(r["level"], r["awaiting"]): r["n"] for r in levels}
        for level in (1, 2, 3):
            OPEN.labels(str(level)).set(by_level.get((level, False), 0))
            AWAITING_VERIFICATION.labels(str(level)).set(by_level.get((level, True), 0))
        by_status = {(r["channel"], r["status"]): r["n"] for r in waiting}
        for channel in CHANNELS:
            QUEUE_DEPTH.labels(channel).set(by_status.get((channel, "pending"), 0))
            DEAD.labels(channel).set(by_status.get((channel, "dead"), 0))


async def notice_of(conn: asyncpg.Connection, row: asyncpg.Record):
    """The delivery's notice; a bulletin's with the stored bulletin's HTML and Word document, kept once in the
    bulletins table rather than with each of its deliveries."""
    notice = notice_from_json(row["kind"], json.loads(row["notice"]))
    if isinstance(notice, BulletinNotice):
        content = await store.bulletin_content(conn, notice.bulletin_id)
        notice = replace(notice, html=content["html"], document=content["document"])
    return notice


@dataclass(frozen=True)
class Claimed:
    """A delivery this replica holds the claim on, with what to send."""
    row: asyncpg.Record
    target: Target
    notice: Notice
    claim: uuid.UUID


def is_acknowledged_row(row: asyncpg.Record, now: datetime) -> bool:
    return row["acknowledged_until"] is not None and now < row["acknowledged_until"]


def scheduling_job(catalog: Catalog, hours: OfficeHours, routes: Routes, settings: NotifierSettings,
                   clock: Callable[[], datetime]):
    """The StreamService background job: a round every `scheduler_interval_s`; a failed round is
    logged and the next one starts over (every step is idempotent)."""

    async def escalate_and_deliver(pool: asyncpg.Pool) -> None:
        async with httpx.AsyncClient(timeout=settings.delivery_timeout_s) as client:
            scheduler = Scheduler(catalog, hours, routes, make_channels(settings, client), settings)
            while True:
                try:
                    await scheduler.run_once(pool, clock())
                except TRANSIENT_ERRORS as exc:
                    log.warning("scheduler round failed; retrying at the next one", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(settings.scheduler_interval_s)

    return escalate_and_deliver
