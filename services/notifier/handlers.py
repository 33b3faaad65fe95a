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
from duban.events.models import CaseWarning, MilestoneStatusChanged, TaskLightChanged, TaskUpdated
from duban.events.registry import Dispatch
from services.notifier import store
from services.notifier.domain.escalation import civil, milestone_deadline, on_light, task_deadline

log = structlog.get_logger(__name__)

LIGHT_CHANGES = Counter("duban_notifier_light_changes_total", "Task light changes seen", ["light"])

# A milestone has no yellow: overdue is its red, and open or done means nothing to escalate.
MILESTONE_LIGHTS = {"overdue": "red", "open": "green", "done": "green"}


class NotifierHandler:
    def __init__(self, catalog: Catalog, case_warnings: Callable[[asyncpg.Connection, InboundEvent], Awaitable[None]]
                 | None = None) -> None:
        self.catalog = catalog
        routes = {TaskLightChanged: self._light_changed, TaskUpdated: self._task_updated,
                  MilestoneStatusChanged: self._milestone_changed}
        if case_warnings:  # services.notifier.warnings.CaseWarningPlanner
            routes[CaseWarning] = case_warnings
        # Other change events (cases opened, closed…) are the metrics service's; the ledger records them.
        self._handlers = Dispatch(routes)

    async def __call__(self, conn: asyncpg.Connection, event: InboundEvent) -> None:
        if handler := self._handlers.of(event.type):
            await handler(conn, event)

    async def _light_changed(self, conn: asyncpg.Connection, event: InboundEvent) -> None:
        data = event.ce["data"]
        await self._task_light(conn, self._task(event), data["to"], datetime.fromisoformat(data["as_of"]))

    async def _task_updated(self, conn: asyncpg.Connection, event: InboundEvent) -> None:
        data = event.ce["data"]
        task, at = self._task(event), datetime.fromisoformat(event.ce["time"])
        if await store.follow_light(conn, task, data["light"], at):
            LIGHT_CHANGES.labels(data["light"]).inc()
        await self._task_light(conn, task, "green" if data["status"] == "done" else data["light"], at)

    async def _milestone_changed(self, conn: asyncpg.Connection, event: InboundEvent) -> None:
        data = event.ce["data"]
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
