"""Re-deriving tasks' current state, milestones and lights, and announcing what changed.

Runs after reports and completions are stored (inside the batch transaction) and from the
scheduled job as days pass; both go through `TaskEvaluator.refresh`, so a light is computed one
way only and announced only when it changes. A done report or a completion the district office has
not verified yet awaits verification (services/tracker/verification.py); one it returned counts as
never having happened."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg
import structlog
from prometheus_client import Counter, Gauge

from duban import outbox
from duban.catalog import Catalog
from duban.events.models import CompletionAwaitingVerification, MilestoneStatusChanged, TaskLightChanged, TaskUpdated
from duban.outbox import Change
from duban.workcal import WorkingCalendar
from services.tracker import store
from services.tracker.domain.instants import civil_date, utc
from services.tracker.domain.tasks import (
    RETROACTIVE_GRACE_WORKING_DAYS,
    Completion,
    occurrences,
    retroactive_grace,
    task_light,
    verification_grace,
)

log = structlog.get_logger(__name__)

VERIFICATION_GRACE_WORKING_DAYS = 5  # default: working days an unverified "done" keeps an item from red

CALENDAR_GAPS = Counter("duban_tracker_calendar_gaps_total",
                        "Task lights computed in calendar days because the working-day calendar lacks a year",
                        ["year"])
LIGHT_CHANGES = Counter("duban_tracker_light_changes_total", "Task light changes announced", ["light"])
AWAITING = Gauge("duban_tracker_awaiting_verification",
                 "Tasks (reported done) and milestone occurrences (completed) awaiting the district office's verification",
                 ["kind"])
# The status a change event may carry (TaskUpdated): a done report awaiting verification is done.
_ANNOUNCED_STATUS = {"awaiting_verification": "done"}
# The columns of a task row that evaluation derives, in the order store.save_tasks takes them.
_TASK_ROW = ("id", "status", "percent", "last_report_at", "last_reporter", "last_event_id", "last_note", "evidence_url",
             "light", "light_reason", "light_as_of", "light_basis", "light_uncovered_year", "next_due")


@dataclass
class TaskEvaluator:
    catalog: Catalog
    calendar: WorkingCalendar
    retroactive_grace_days: int = RETROACTIVE_GRACE_WORKING_DAYS
    verification_grace_days: int = VERIFICATION_GRACE_WORKING_DAYS

    def verification_grace(self, requested_at: datetime) -> date:
        """The last day a "done" reported at `requested_at` and not verified keeps its items from red."""
        return verification_grace(civil_date(requested_at), self.calendar, self.verification_grace_days)

    @property
    def grace_until(self) -> date:
        """The deadline of the milestones that fell due before the plan was issued."""
        return retroactive_grace(self.catalog.plan.issued, self.calendar, self.retroactive_grace_days)

    async def refresh(self, conn: asyncpg.Connection, task_ids: Iterable[str], now: datetime) -> int:
        """Bring the given tasks up to date as of `now`; returns the number of change events recorded."""
        ids = sorted(set(task_ids))
        tasks = await store.lock_tasks(conn, ids)
        reports = await store.current_reports(conn, ids)
        completions = await store.completions_of(conn, ids)
        stored = await store.milestone_states(conn, ids)
        extended = await store.approved_extensions(conn, ids)
        outcomes = await store.verification_outcomes(conn, ids)
        today, as_of = civil_date(now), utc(now)
        changes: list[Change] = []
        task_rows, milestone_rows = [], []
        for task_id in ids:
            task, row, report = self.catalog.task(task_id), tasks[task_id], reports.get(task_id)
            done = [self._completion(c, outcomes.get((c["source"], c["event_id"])))
                    for c in completions.get(task_id, ()) if outcomes.get((c["source"], c["event_id"])) != "returned"]
            occs = occurrences(task.milestones, done, plan_issued=self.catalog.plan.issued, today=today,
                               grace_until=self.grace_until, extensions=extended)
            # No report (none yet, or every one voided): the task is as the plan left it.
            status = report["status"] if report else "not_started"
            if status == "done":
                # Returned: back in progress, as if the report had not said done.
                status = {"verified": "done", "returned": "in_progress"}.get(
                    outcomes.get((report["source"], report["event_id"])), "awaiting_verification")
            awaiting_until = self.verification_grace(report["event_time"]) if status == "awaiting_verification" else None
            done_on = civil_date(report["event_time"]) if status in ("done", "awaiting_verification") else None
            light = task_light(occs, status=status, done_on=done_on, today=today, calendar=self.calendar,
                               awaiting_until=awaiting_until)
            if light.uncovered_year:
                CALENDAR_GAPS.labels(str(light.uncovered_year)).inc()
                log.warning("working-day calendar lacks a year; light computed in calendar days",
                            task=task_id, year=light.uncovered_year)

            for occ in occs:
                new, done_by, announced = occ.status(today), occ.done_by, occ.announced_status(today)
                old = stored.get((occ.milestone_id, occ.due))
                if old is None or old != (new, done_by.event_id if done_by else None, announced):
                    milestone_rows.append((
                        occ.milestone_id, occ.due, task_id, occ.starts, new, done_by.order[0] if done_by else None,
                        done_by.source if done_by else None, done_by.event_id if done_by else None, now, announced))
                if new == "awaiting_verification" and (old is None or old[:2] != (new, done_by.event_id)):
                    changes.append(Change(CompletionAwaitingVerification, task_id, {
                        "milestone_id": occ.milestone_id, "due": occ.due.isoformat(),
                        "deadline": occ.deadline.isoformat(), "request_source": done_by.source,
                        "request_id": done_by.event_id, "requested_at": utc(done_by.order[0]),
                        "grace_until": done_by.awaiting_until.isoformat(), "as_of": as_of}, now))
                if old is None or old[2] != announced:
                    changes.append(Change(MilestoneStatusChanged, task_id, {
                        "milestone_id": occ.milestone_id, "from": old[2] if old else None, "to": announced,
                        "as_of": as_of}, now))

            if status == "awaiting_verification" and (row["status"], row["last_event_id"]) != (status, report["event_id"]):
                changes.append(Change(CompletionAwaitingVerification, task_id, {
                    "request_source": report["source"], "request_id": report["event_id"],
                    "requested_at": utc(report["event_time"]), "grace_until": awaiting_until.isoformat(),
                    "as_of": as_of}, now))
            first = row["light_as_of"] is None
            light_changed = first or light.light != row["light"]
            if light_changed:
                LIGHT_CHANGES.labels(light.light).inc()
                changes.append(Change(TaskLightChanged, task_id, {
                    "from": None if first else row["light"], "to": light.light, "reason": light.reason,
                    "as_of": as_of}, now))
            announced_status = _ANNOUNCED_STATUS.get(status, status)
            current = (announced_status, report["percent"], report["event_time"]) if report else None
            if current and (light_changed or current != (_ANNOUNCED_STATUS.get(row["status"], row["status"]),
                                                         row["percent"], row["last_report_at"])):
                changes.append(Change(TaskUpdated, task_id, {
                    "status": current[0], "percent": current[1], "light": light.light,
                    "reported_at": utc(current[2])}, now))

            new_row = (
                task_id, status, report["percent"] if report else 0,
                report["event_time"] if report else None, report["source"] if report else None,
                report["event_id"] if report else None, report["note"] if report else None,
                report["evidence_url"] if report else None, light.light, light.reason,
                now if light_changed else row["light_as_of"], light.basis, light.uncovered_year, light.due)
            if new_row != tuple(row[c] for c in _TASK_ROW):
                task_rows.append(new_row)
        await store.save_milestones(conn, milestone_rows)
        await store.save_tasks(conn, task_rows)
        await outbox.add_many(conn, changes)
        if task_rows or milestone_rows:
            await count_awaiting(conn)
        return len(changes)

    def _completion(self, row: asyncpg.Record, outcome: str | None) -> Completion:
        return Completion(row["milestone_id"], civil_date(row["event_time"]),
                          (row["event_time"], row["source"], row["event_id"]), row["source"], row["event_id"],
                          awaiting_until=None if outcome == "verified" else self.verification_grace(row["event_time"]))


async def count_awaiting(conn: asyncpg.Connection) -> None:
    """Sets the gauge from the tables (at start and whenever tasks or milestones change)."""
    for kind, count in (await store.count_awaiting_verification(conn)).items():
        AWAITING.labels(kind).set(count)
