"""Digests (DESIGN §5): a route in `digest` mode gets one message per working day, at DUBAN_DIGEST_AT
(Asia/Shanghai), listing the department's open items — each escalated task or milestone with its
light, due date and what is asked, and the case warnings since the previous digest. On the week's
first working day each lead department also gets the weekly digest of the tasks it leads. An item
whose "done" awaits the district office's verification is not urged: the daily digest leaves it out,
the weekly one shows it with its light and no escalation (docs/decisions/020).

Planned as deliveries like any notice, keyed (kind, department, 0, day, channel, recipient): one
digest per department and day, however often the scheduler runs and on however many replicas."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import asyncpg
import structlog

from duban.catalog import Catalog
from duban.workcal import SHANGHAI, OfficeHours, to_shanghai
from services.notifier import store
from services.notifier.domain.messages import DigestNotice, WeeklyNotice
from services.notifier.routes import Routes, Target
from services.notifier.settings import NotifierSettings

log = structlog.get_logger(__name__)

# The weekly digest goes to the addresses that take the lead's notices (催办).
LEAD_LEVEL = 2


@dataclass
class Digests:
    catalog: Catalog
    hours: OfficeHours
    routes: Routes
    settings: NotifierSettings

    def digest_time(self, day: date) -> datetime:
        return datetime.combine(day, self.settings.digest_at, SHANGHAI)

    def previous_working_day(self, day: date) -> date:
        day -= timedelta(days=1)
        while not self.hours.calendar.is_workday(day):
            day -= timedelta(days=1)
        return day

    def first_working_day_of_week(self, day: date) -> bool:
        monday = day - timedelta(days=day.weekday())
        return not any(self.hours.calendar.is_workday(monday + timedelta(days=k)) for k in range(day.weekday()))

    async def plan(self, pool: asyncpg.Pool, now: datetime) -> int:
        """Plan today's digests once their hour has come on a working day; returns how many were new."""
        day = to_shanghai(now).date()
        if not self.hours.calendar.is_workday(day) or now < self.digest_time(day):
            return 0
        planned = 0
        async with pool.acquire() as conn, conn.transaction():
            since = self.digest_time(self.previous_working_day(day))
            for department, targets in self.routes.digest_targets().items():
                planned += await self._daily(conn, department, targets, day, since, now)
            if self.settings.weekly_digest and self.first_working_day_of_week(day):
                for department in sorted({code for task in self.catalog.tasks for code in task.lead}):
                    planned += await self._weekly(conn, department, day, now)
        return planned

    async def _daily(self, conn: asyncpg.Connection, department: str, targets: list[Target], day: date,
                     since: datetime, now: datetime) -> int:
        items = [self._item(row) for row in await store.open_items_of(conn, department)]
        warnings = [json.loads(r["notice"]) for r in
                    await store.case_warnings_between(conn, department, since, self.digest_time(day))]
        if not items and not warnings:
            return 0  # nothing open: no message
        notice = DigestNotice(department, self.catalog.department(department).name, day.isoformat(), items, warnings)
        return await self._plan(conn, notice, department, targets, day, now)

    async def _weekly(self, conn: asyncpg.Connection, department: str, day: date, now: datetime) -> int:
        tasks = [t for t in self.catalog.tasks if department in t.lead]
        lights = await store.lights_of(conn, [t.id for t in tasks])
        escalated = {row["item"]: row for row in await store.open_items_of(conn, department)}
        rows = [self._item(escalated[t.id]) if t.id in escalated else
                {"item": t.id, "title": t.title, "light": lights.get(t.id), "deadline": None, "level": None}
                for t in tasks]
        notice = WeeklyNotice(department, self.catalog.department(department).name, day.isoformat(), rows)
        return await self._plan(conn, notice, department, self.routes.targets(department, LEAD_LEVEL), day, now)

    def _item(self, row: asyncpg.Record) -> dict:
        task = self.catalog.task(row["task_id"])
        title = self.catalog.milestone(row["item"]).title if row["item"] != task.id else task.title
        return {"item": row["item"], "title": title, "light": row["light"], "deadline": row["deadline"].isoformat(),
                "level": row["level"]}

    async def _plan(self, conn: asyncpg.Connection, notice, department: str, targets: list[Target], day: date,
                    now: datetime) -> int:
        planned = 0
        for target in targets:
            planned += await store.plan_delivery(
                conn, kind=notice.KIND, escalation_id=None, item=department, level=0, window=day,
                channel=target.channel, recipient=target.recipient, departments=[department],
                notice=notice.as_json(), not_before=now, now=now)
        if planned:
            log.info("digest planned", kind=notice.KIND, department=department, day=day.isoformat(), targets=planned)
        return planned
