"""延期申请: a department asks to move a milestone's deadline; the district office approves or rejects.

A request names one occurrence of a milestone (its plan due date) and the date asked for. An approval
makes that date the occurrence's deadline: the task is re-derived in the same transaction (lights
and milestone statuses follow the new date through TaskEvaluator.refresh), and the decision goes out
through the outbox as a MilestoneExtensionDecided event. The plan's date, the request and
the decision stay in `milestone_extensions` (never deleted), so the task's history shows them."""

from __future__ import annotations

from datetime import date, datetime

import asyncpg
import structlog
from prometheus_client import Gauge

from duban import outbox
from duban.events.models import MilestoneExtensionDecided
from duban.outbox import Change
from services.tracker import store
from services.tracker.domain.instants import civil_date, utc
from services.tracker.evaluation import TaskEvaluator

log = structlog.get_logger(__name__)

MILESTONES_EXTENDED = Gauge("duban_tracker_milestones_extended",
                            "Milestone occurrences whose deadline an approved extension moved")


class ExtensionRefused(Exception):
    """The request or decision cannot be recorded; `status` is the HTTP status a route answers with."""

    def __init__(self, status: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail


async def count_extended(conn: asyncpg.Connection) -> int:
    """Sets the gauge from the table (at start and after each decision) and returns it."""
    extended = await store.count_extended_occurrences(conn)
    MILESTONES_EXTENDED.set(extended)
    return extended


async def request_extension(conn: asyncpg.Connection, task_id: str, milestone_id: str, *, due: date | None,
                            new_due: date, reason: str, evidence: list[str], principal: str,
                            now: datetime) -> dict:
    """Record a request to move the occurrence of `milestone_id` due on `due` (default: its earliest
    occurrence not done) to `new_due`."""
    async with conn.transaction():
        await store.lock_tasks(conn, [task_id])
        occurrences = await store.occurrences_of(conn, task_id, milestone_id)
        if not occurrences:
            raise ExtensionRefused(404, "milestone-not-found", f"{task_id} has no milestone {milestone_id!r}")
        if due is None:
            occurrence = next((o for o in occurrences if o["status"] != "done"), None)
            if occurrence is None:
                raise ExtensionRefused(409, "milestone-done", f"every occurrence of {milestone_id} is done")
        else:
            occurrence = next((o for o in occurrences if o["due"] == due), None)
            if occurrence is None:
                raise ExtensionRefused(404, "milestone-not-found", f"{milestone_id} has no occurrence due {due}")
        if occurrence["status"] == "done":
            raise ExtensionRefused(409, "milestone-done", f"{milestone_id} due {occurrence['due']} is done already")
        current = (await store.approved_extensions(conn, [task_id])).get((milestone_id, occurrence["due"]),
                                                                         occurrence["due"])
        if new_due <= current:
            raise ExtensionRefused(422, "invalid-extension",
                                   f"the new date must be after the current deadline {current}")
        try:
            extension = await store.insert_extension(conn, task_id, milestone_id, occurrence["due"], new_due,
                                                     reason.strip(), evidence, principal, now)
        except asyncpg.UniqueViolationError:
            raise ExtensionRefused(409, "extension-pending",
                                   f"{milestone_id} due {occurrence['due']} has an undecided request already") from None
    log.info("extension requested", task=task_id, milestone=milestone_id, due=occurrence["due"], to=new_due,
             principal=principal)
    return extension


async def decide_extension(conn: asyncpg.Connection, evaluator: TaskEvaluator, extension_id: int, *, approve: bool,
                           reason: str, principal: str, now: datetime) -> dict:
    """Approve or reject a request, re-derive its task as of `now`, and announce the decision."""
    async with conn.transaction():
        task_id = await store.task_of_extension(conn, extension_id)
        if task_id is None:
            raise ExtensionRefused(404, "extension-not-found", f"no extension request {extension_id}")
        await store.lock_tasks(conn, [task_id])  # the task first, as every evaluation locks it
        extension = await store.decide_extension(conn, extension_id, "approved" if approve else "rejected",
                                                 principal, now, reason.strip())
        if extension is None:
            raise ExtensionRefused(409, "extension-decided", f"extension request {extension_id} was decided before")
        await evaluator.refresh(conn, [extension["task_id"]], now)
        due = (await store.approved_extensions(conn, [extension["task_id"]])).get(
            (extension["milestone_id"], extension["original_due"]), extension["original_due"])
        await outbox.add_many(conn, [Change(MilestoneExtensionDecided, extension["task_id"], {
            "extension_id": extension_id, "milestone_id": extension["milestone_id"],
            "original_due": extension["original_due"].isoformat(), "requested_due": extension["requested_due"].isoformat(),
            "decision": extension["status"], "due": due.isoformat(), "reason": extension["decision_reason"],
            "decided_by": principal, "as_of": utc(now)}, now)])
        await count_extended(conn)
    log.info("extension decided", id=extension_id, task=extension["task_id"], decision=extension["status"],
             principal=principal, today=civil_date(now))
    return extension
