"""Tracker change events → escalations: a light that turns yellow or red opens or raises one, green
or done resolves it; case warnings go to their planner (warnings.py). Applied inside the consumer's
transaction, so each event counts once; the scheduler then decides what to send and when."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

import asyncpg
import structlog
from prometheus_client import Counter

from duban.catalog import Catalog
from duban.catalog.models import Task
from duban.consumer import InboundEvent, PermanentEventError
from duban.events.models import CaseWarning, event_type
from services.notifier import store
from services.notifier.escalation import civil, milestone_deadline, on_light, task_deadline

log = structlog.get_logger(__name__)

TASK_UPDATED = "duban.tracker.task.updated.v1"
LIGHT_CHANGED = "duban.tracker.task.light-changed.v1"
MILESTONE_CHANGED = "duban.tracker.milestone.status-changed.v1"
CASE_WARNING = event_type(CaseWarning)
LIGHT_CHANGES = Counter("duban_notifier_light_changes_total", "Task light changes seen", ["light"])

# A milestone has no yellow: overdue is its red, and open or done means nothing to escalate.
MILESTONE_LIGHTS = {"overdue": "red", "open": "green", "done": "green"}


class NotifierHandler:
    def __init__(self, catalog: Catalog, case_warnings: Callable[[asyncpg.Connection, InboundEvent], Awaitable[None]]
                 | None = None) -> None:
        self.catalog = catalog
        self.case_warnings = case_warnings  # services.notifier.warnings.CaseWarningPlanner

    async def __call__(self, conn: asyncpg.Connection, event: InboundEvent) -> None:
        data = event.ce["data"]
        if event.type == CASE_WARNING and self.case_warnings:
            await self.case_warnings(conn, event)
        elif event.type == LIGHT_CHANGED:
            await self._task_light(conn, self._task(event), data["to"], datetime.fromisoformat(data["as_of"]))
        elif event.type == TASK_UPDATED:
            task, at = self._task(event), datetime.fromisoformat(event.ce["time"])
            await self._follow_light(conn, task, data["light"], at)
            await self._task_light(conn, task, "green" if data["status"] == "done" else data["light"], at)
        elif event.type == MILESTONE_CHANGED:
            task, at = self._task(event), datetime.fromisoformat(data["as_of"])
            try:
                milestone = self.catalog.milestone(data["milestone_id"])
            except KeyError as exc:
                raise PermanentEventError("unknown_milestone", str(exc)) from None
            await self._apply(conn, item=milestone.id, kind="milestone", task=task, light=MILESTONE_LIGHTS[data["to"]],
                              at=at, deadline=milestone_deadline(milestone, civil(at)))

    def _task(self, event: InboundEvent) -> Task:
        try:
            return self.catalog.task(event.ce["subject"])
        except KeyError as exc:
            raise PermanentEventError("unknown_task", str(exc)) from None

    async def _task_light(self, conn: asyncpg.Connection, task: Task, light: str, at: datetime) -> None:
        # Task changes follow the milestone changes of the same evaluation, so an overdue milestone
        # is already open here and names the deadline a red task missed.
        overdue = await store.open_deadlines(conn, task.id, "milestone") if light == "red" else []
        await self._apply(conn, item=task.id, kind="task", task=task, light=light, at=at,
                          deadline=task_deadline(task, light, civil(at), overdue))

    async def _apply(self, conn: asyncpg.Connection, *, item: str, kind: str, task: Task, light: str, at: datetime,
                     deadline) -> None:
        row = await store.open_escalation(conn, item)
        current = store.ladder_of(row) if row else None
        ladder = on_light(current, light, at)
        if ladder is None or ladder == current:
            return
        if row is None:
            await store.insert_escalation(conn, item=item, kind=kind, task_id=task.id, ladder=ladder, deadline=deadline,
                                          units=list(task.departments))
        else:
            await store.update_ladder(conn, row["id"], ladder, deadline=deadline, next_check_at=at)
        log.info("escalation changed", item=item, light=light, level=ladder.level, resolved=ladder.resolved_at is not None)

    async def _follow_light(self, conn: asyncpg.Connection, task: Task, light: str, at: datetime) -> None:
        previous = await conn.fetchval("SELECT light FROM task_lights WHERE task_id = $1", task.id)
        await conn.execute(
            "INSERT INTO task_lights (task_id, light, since, lead, responsible) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (task_id) DO UPDATE SET lead = EXCLUDED.lead, responsible = EXCLUDED.responsible,"
            " light = EXCLUDED.light, since = CASE WHEN task_lights.light = EXCLUDED.light THEN task_lights.since"
            " ELSE EXCLUDED.since END",
            task.id, light, at, list(task.lead), list(task.responsible))
        if previous != light:
            LIGHT_CHANGES.labels(light).inc()
