"""Re-deriving tasks' current state, milestones and lights, and announcing what changed.

Runs after reports and completions are stored (inside the batch transaction) and from the
scheduled job as days pass; both go through `TaskEvaluator.refresh`, so a light is computed one
way only and announced only when it changes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg
import structlog
from prometheus_client import Counter

from duban import outbox
from duban.catalog import Catalog
from duban.events.models import MilestoneStatusChanged, TaskLightChanged, TaskUpdated
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
)

log = structlog.get_logger(__name__)

CALENDAR_GAPS = Counter("duban_tracker_calendar_gaps_total",
                        "Task lights computed in calendar days because the working-day calendar lacks a year",
                        ["year"])
LIGHT_CHANGES = Counter("duban_tracker_light_changes_total", "Task light changes announced", ["light"])
# The columns of a task row that evaluation derives, in the order store.save_tasks takes them.
_TASK_ROW = ("id", "status", "percent", "last_report_at", "last_reporter", "last_event_id", "last_note", "evidence_url",
             "light", "light_reason", "light_as_of", "light_basis", "light_uncovered_year", "next_due")


@dataclass
class TaskEvaluator:
    catalog: Catalog
    calendar: WorkingCalendar
    retroactive_grace_days: int = RETROACTIVE_GRACE_WORKING_DAYS

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
        today, as_of = civil_date(now), utc(now)
        changes: list[Change] = []
        task_rows, milestone_rows = [], []
        for task_id in ids:
            task, row, report = self.catalog.task(task_id), tasks[task_id], reports.get(task_id)
            done = [Completion(c["milestone_id"], civil_date(c["event_time"]), (c["event_time"], c["source"], c["event_id"]),
                               c["source"], c["event_id"]) for c in completions.get(task_id, ())]
            occs = occurrences(task.milestones, done, plan_issued=self.catalog.plan.issued, today=today,
                               grace_until=self.grace_until, extensions=extended)
            # No report (none yet, or every one voided): the task is as the plan left it.
            status = report["status"] if report else "not_started"
            done_on = civil_date(report["event_time"]) if report and status == "done" else None
            light = task_light(occs, status=status, done_on=done_on, today=today, calendar=self.calendar)
            if light.uncovered_year:
                CALENDAR_GAPS.labels(str(light.uncovered_year)).inc()
                log.warning("working-day calendar lacks a year; light computed in calendar days",
                            task=task_id, year=light.uncovered_year)

            for occ in occs:
                new, done_by = occ.status(today), occ.done_by
                old = stored.get((occ.milestone_id, occ.due))
                if old is None or old != (new, done_by.event_id if done_by else None):
                    milestone_rows.append((
                        occ.milestone_id, occ.due, task_id, occ.starts, new, done_by.order[0] if done_by else None,
                        done_by.source if done_by else None, done_by.event_id if done_by else None, now))
                if old is None or old[0] != new:
                    changes.append(Change(MilestoneStatusChanged, task_id, {
                        "milestone_id": occ.milestone_id, "from": old[0] if old else None, "to": new, "as_of": as_of},
                        now))

            first = row["light_as_of"] is None
            light_changed = first or light.light != row["light"]
            if light_changed:
                LIGHT_CHANGES.labels(light.light).inc()
                changes.append(Change(TaskLightChanged, task_id, {
                    "from": None if first else row["light"], "to": light.light, "reason": light.reason,
                    "as_of": as_of}, now))
            current = (report["status"], report["percent"], report["event_time"]) if report else None
            if current and (light_changed or current != (row["status"], row["percent"], row["last_report_at"])):
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
        return len(changes)
