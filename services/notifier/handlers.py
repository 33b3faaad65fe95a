"""Tracker change events → escalations: a light that turns yellow or red opens or raises one, green
or done resolves it; case warnings go to their planner (warnings.py). A "done" awaiting the district
office's verification pauses its item's escalation, a return resumes it, a verification resolves it
(docs/decisions/020); an approved extension moves the deadline the notices name. Applied inside the
consumer's transaction, so each event counts once; the scheduler then decides what to send and when.
Each change is also written to the escalation's append-only history."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import date, datetime
from functools import partial
from typing import Protocol

import asyncpg
import structlog
from prometheus_client import Counter

from duban.catalog import Catalog
from duban.catalog.models import Milestone, Task
from duban.consumer import AfterCommit, InboundEvent, PermanentEventError
from duban.events.models import (
    CaseWarning,
    CompletionAwaitingVerification,
    CompletionReturned,
    CompletionVerified,
    MilestoneExtensionDecided,
    MilestoneStatusChanged,
    TaskLightChanged,
    TaskUpdated,
)
from duban.events.registry import Dispatch
from services.notifier import store
from services.notifier.domain.escalation import civil, milestone_deadline, on_light, task_deadline

log = structlog.get_logger(__name__)

LIGHT_CHANGES = Counter("duban_notifier_light_changes_total", "Task light changes seen", ["light"])

# A milestone has no yellow: overdue is its red, and open or done means nothing to escalate.
MILESTONE_LIGHTS = {"overdue": "red", "open": "green", "done": "green"}

# The instants and dates of a tracker event's data that the handlers read.
MOMENTS, DAYS = ("as_of", "requested_at"), ("original_due", "due")


def moment(text: str) -> datetime:
    """An instant of an event; one that does not read is the event's fault (PermanentEventError)."""
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise PermanentEventError("unreadable_time", f"{text!r}: {exc}") from None


def day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise PermanentEventError("unreadable_time", f"{text!r}: {exc}") from None


class CaseWarnings(Protocol):
    """What the handler asks of its case-warning planner (services.notifier.warnings.CaseWarningPlanner)."""

    def check(self, event: InboundEvent) -> None: ...

    async def __call__(self, conn: asyncpg.Connection, event: InboundEvent, after_commit: list[AfterCommit]) -> None: ...


class NotifierHandler:
    """A duban.consumer BatchHandler. `check` refuses, before anything is written, what can never apply
    (an item the plan does not have, an instant that does not read); `apply_batch` applies the batch's
    events one after the other under the consumer's one savepoint (most change events, the cases',
    are not the notifier's and cost nothing), and leaves its counters and log lines about what changed
    to run after the commit, so an attempt that is rolled back (the consumer then applies the batch
    event by event to set a faulty one apart) counts nothing."""

    def __init__(self, catalog: Catalog, case_warnings: CaseWarnings | None = None) -> None:
        self.catalog = catalog
        routes = {TaskLightChanged: self._light_changed, TaskUpdated: self._task_updated,
                  MilestoneStatusChanged: self._milestone_changed, MilestoneExtensionDecided: self._extension_decided,
                  CompletionAwaitingVerification: self._awaiting_verification, CompletionVerified: self._verified,
                  CompletionReturned: self._returned}
        checks = dict.fromkeys(routes, self._check_item)
        if case_warnings:
            routes[CaseWarning], checks[CaseWarning] = case_warnings, case_warnings.check
        # Other change events (cases opened, closed…) are the metrics service's; the ledger records them.
        self._handlers: Dispatch[Callable[..., Awaitable[None]]] = Dispatch(routes)
        self._checks: Dispatch[Callable[[InboundEvent], None]] = Dispatch(checks)

    def check(self, event: InboundEvent) -> None:
        if check := self._checks.of(event.type):
            check(event)

    def _check_item(self, event: InboundEvent) -> None:
        task, data = self._task(event), event.ce["data"]
        if milestone_id := data.get("milestone_id"):
            self._milestone(task, milestone_id)
        for key in MOMENTS:
            if key in data:
                moment(data[key])
        for key in DAYS:
            if key in data:
                day(data[key])
        moment(event.ce["time"])

    async def apply_batch(self, conn: asyncpg.Connection, events: Sequence[InboundEvent]) -> list[AfterCommit]:
        after_commit: list[AfterCommit] = []
        for event in events:
            if handler := self._handlers.of(event.type):
                await handler(conn, event, after_commit)
        return after_commit

    async def _light_changed(self, conn: asyncpg.Connection, event: InboundEvent,
                             after_commit: list[AfterCommit]) -> None:
        data = event.ce["data"]
        await self._task_light(conn, self._task(event), data["to"], moment(data["as_of"]), after_commit)

    async def _task_updated(self, conn: asyncpg.Connection, event: InboundEvent, after_commit: list[AfterCommit]) -> None:
        data = event.ce["data"]
        task, at = self._task(event), moment(event.ce["time"])
        if await store.follow_light(conn, task, data["light"], at):
            after_commit.append(LIGHT_CHANGES.labels(data["light"]).inc)
        await self._task_light(conn, task, "green" if data["status"] == "done" else data["light"], at, after_commit)

    async def _milestone_changed(self, conn: asyncpg.Connection, event: InboundEvent,
                                 after_commit: list[AfterCommit]) -> None:
        data = event.ce["data"]
        task, at = self._task(event), moment(data["as_of"])
        milestone = self._milestone(task, data["milestone_id"])
        plan = milestone_deadline(milestone, civil(at))
        extended = await store.extended_deadlines(conn, [milestone.id])
        await self._apply(conn, item=milestone.id, kind="milestone", task=task, light=MILESTONE_LIGHTS[data["to"]],
                          at=at, deadline=extended.get((milestone.id, plan), plan), after_commit=after_commit)

    async def _extension_decided(self, conn: asyncpg.Connection, event: InboundEvent,
                                 after_commit: list[AfterCommit]) -> None:
        await self._extension(conn, self._task(event), event.ce["data"])

    async def _awaiting_verification(self, conn: asyncpg.Connection, event: InboundEvent,
                                     after_commit: list[AfterCommit]) -> None:
        await self._verification(conn, self._task(event), "awaiting", event.ce["data"], after_commit)

    async def _verified(self, conn: asyncpg.Connection, event: InboundEvent, after_commit: list[AfterCommit]) -> None:
        await self._verification(conn, self._task(event), "verified", event.ce["data"], after_commit)

    async def _returned(self, conn: asyncpg.Connection, event: InboundEvent, after_commit: list[AfterCommit]) -> None:
        await self._verification(conn, self._task(event), "returned", event.ce["data"], after_commit)

    def _task(self, event: InboundEvent) -> Task:
        try:
            return self.catalog.task(event.ce["subject"])
        except KeyError as exc:
            raise PermanentEventError("unknown_task", str(exc)) from None

    def _milestone(self, task: Task, milestone_id: str) -> Milestone:
        for milestone in task.milestones:
            if milestone.id == milestone_id:
                return milestone
        raise PermanentEventError("unknown_milestone", f"{task.id} has no milestone {milestone_id!r} in the plan")

    async def _task_light(self, conn: asyncpg.Connection, task: Task, light: str, at: datetime,
                          after_commit: list[AfterCommit]) -> None:
        # Task changes follow the milestone changes of the same evaluation, so an overdue milestone
        # is already open here and names the deadline a red task missed.
        overdue = await store.open_deadlines(conn, task.id, "milestone") if light == "red" else []
        extended = await store.extended_deadlines(conn, [m.id for m in task.milestones])
        await self._apply(conn, item=task.id, kind="task", task=task, light=light, at=at,
                          deadline=task_deadline(task, light, civil(at), overdue, extended), after_commit=after_commit)

    async def _apply(self, conn: asyncpg.Connection, *, item: str, kind: str, task: Task, light: str, at: datetime,
                     deadline, after_commit: list[AfterCommit]) -> None:
        row = await store.open_escalation(conn, item)
        current = store.ladder_of(row) if row else None
        if row is not None and row["awaiting_verification_since"] is not None:
            if light == "green":
                return  # the "done" awaiting verification: its verification resolves, its return resumes
            # Yellow or red while awaiting: the grace passed unverified, so the escalation goes on.
            await store.set_awaiting_verification(conn, row["id"], None, at)
            await store.record(conn, row["id"], "resumed", at, current, light=light)
        ladder = on_light(current, light, at)
        if ladder is None or ladder == current:
            return
        if row is None:
            await store.insert_escalation(conn, item=item, kind=kind, task_id=task.id, ladder=ladder, deadline=deadline,
                                          units=list(task.departments))
        else:
            await store.update_ladder(conn, row["id"], ladder, deadline=deadline, next_check_at=at, before=current)
        after_commit.append(partial(log.info, "escalation changed", item=item, light=light, level=ladder.level,
                                    resolved=ladder.resolved_at is not None))

    async def _verification(self, conn: asyncpg.Connection, task: Task, step: str, data: dict,
                            after_commit: list[AfterCommit]) -> None:
        """Pause the item's escalation while its "done" awaits verification, resume it on a return,
        resolve it on a verification; an item with no open escalation has nothing to change."""
        row = await store.open_escalation(conn, data.get("milestone_id") or task.id)
        if row is None:
            return
        at, ladder = moment(data["as_of"]), store.ladder_of(row)
        request = {"request_source": data["request_source"], "request_id": data["request_id"],
                   "requested_at": data["requested_at"], "grace_until": data["grace_until"]}
        if step == "awaiting":
            if row["awaiting_verification_since"] is None:
                await store.set_awaiting_verification(conn, row["id"], moment(data["requested_at"]),
                                                      row["next_check_at"])
                await store.record(conn, row["id"], "awaiting-verification", at, ladder, **request)
            return
        decided = {**request, "reason": data.get("reason")}
        if step == "returned":
            await store.set_awaiting_verification(conn, row["id"], None, at)
            await store.record(conn, row["id"], "returned", at, ladder, principal=data["decided_by"], **decided)
        else:
            await store.record(conn, row["id"], "verified", at, ladder, principal=data["decided_by"], **decided)
            await store.update_ladder(conn, row["id"], replace(ladder, resolved_at=at), deadline=row["deadline"],
                                      next_check_at=at, before=ladder)
        after_commit.append(partial(log.info, "escalation follows a verification", item=row["item"], step=step,
                                    decided_by=data["decided_by"]))

    async def _extension(self, conn: asyncpg.Connection, task: Task, data: dict) -> None:
        """An approved extension is the occurrence's deadline from now on: notices name it, and the open
        escalations of the milestone and its task that named the plan's date name the new one."""
        original, due = day(data["original_due"]), day(data["due"])
        if data["decision"] == "approved":
            await store.record_extension(conn, data["milestone_id"], original, due)
        at = moment(data["as_of"])
        for item in (data["milestone_id"], task.id):
            row = await store.open_escalation(conn, item)
            if row is None:
                continue
            if row["deadline"] == original and due != original:
                await store.set_deadline(conn, row["id"], due)
            await store.record(conn, row["id"], "extension-decided", at, store.ladder_of(row),
                               principal=data["decided_by"], milestone_id=data["milestone_id"],
                               decision=data["decision"], original_due=data["original_due"], due=data["due"],
                               reason=data["reason"])
