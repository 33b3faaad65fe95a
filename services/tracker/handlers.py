"""Department events → tracker state, a batch at a time, inside the batch transaction of duban.consumer.

`check` refuses what can never apply (an unknown task, a department acting outside its tasks or
case types) before anything is written; `apply_batch` stores the batch's reports, completions
and case events with one statement per table, then re-derives the touched tasks and cases."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import cache

import asyncpg

from duban import outbox
from duban.catalog import Catalog
from duban.consumer import InboundEvent, PermanentEventError
from duban.events.models import source_department
from duban.outbox import Change
from services.tracker import store
from services.tracker.domain.cases import KINDS, announcements, fold_case, state_as_json
from services.tracker.evaluation import TaskEvaluator

PROGRESS = "duban.task.progress-reported.v1"
MILESTONE = "duban.task.milestone-completed.v1"


class TrackerHandlers:
    def __init__(self, catalog: Catalog, evaluator: TaskEvaluator, clock: Callable[[], datetime]) -> None:
        self.catalog, self.evaluator, self.clock = catalog, evaluator, clock
        self.task_ids = {t.id for t in catalog.tasks}
        # The catalog answers these by walking collectives; checked per event, they are worth keeping.
        self.may_report = cache(catalog.may_report_task)
        self.feeders = cache(catalog.case_type_departments)

    def check(self, event: InboundEvent) -> None:
        ce, department = event.ce, source_department(event.ce["source"])
        if event.type in (PROGRESS, MILESTONE):
            task_id = ce["subject"]
            if task_id not in self.task_ids:
                raise PermanentEventError("unknown_task", f"no task {task_id} in the plan")
            if not self.may_report(department, task_id):
                raise PermanentEventError("not_responsible", f"{department} neither leads nor is responsible for {task_id}")
            milestone_id = ce["data"].get("milestone_id")
            if event.type == MILESTONE and milestone_id not in {m.id for m in self.catalog.task(task_id).milestones}:
                raise PermanentEventError("unknown_milestone", f"{task_id} has no milestone {milestone_id}")
        elif event.type in KINDS:
            case_type = ce["data"]["case_type"]
            if department not in self.feeders(case_type):
                raise PermanentEventError("not_the_reporter", f"{department} does not send {case_type} cases")
        # Other department events (indicator reports) are the metrics service's; the ledger records them.

    async def apply_batch(self, conn: asyncpg.Connection, events: Sequence[InboundEvent]) -> None:
        reports, completions, case_events = [], [], []
        for event in events:
            ce, data = event.ce, event.ce["data"]
            at = store.parse_time(ce["time"])
            if event.type == PROGRESS:
                reports.append((ce["source"], ce["id"], ce["subject"], at, data["status"], data["percent"],
                                data.get("note"), data.get("evidence_url")))
            elif event.type == MILESTONE:
                completions.append((ce["source"], ce["id"], ce["subject"], data["milestone_id"], at,
                                    data.get("note"), data.get("evidence_url")))
            elif event.type in KINDS:
                case_events.append((ce["source"], ce["id"], source_department(ce["source"]), ce["subject"], event.type, at,
                                    json.dumps(data, ensure_ascii=False)))
        await store.insert_reports(conn, reports)
        await store.insert_completions(conn, completions)
        touched = {r[2] for r in reports} | {c[2] for c in completions}
        if touched:
            await self.evaluator.refresh(conn, touched, self.clock())
        if case_events:
            await apply_case_events(conn, case_events, self.clock())


async def apply_case_events(conn: asyncpg.Connection, rows: Sequence[tuple], now: datetime) -> None:
    """Store case events, re-fold every case they touch and announce what changed."""
    await store.insert_case_events(conn, rows)
    await refold_cases(conn, {(r[2], r[3]) for r in rows}, now)


async def refold_cases(conn: asyncpg.Connection, cases: Iterable[tuple[str, str]], now: datetime) -> None:
    """Fold each (department, case id) afresh from its stored events and announce what changed."""
    keys = sorted(set(cases))
    announced = await store.lock_cases(conn, keys)
    events = await store.case_events_of(conn, keys)
    saved, changes = [], []
    for key in keys:
        state = fold_case(*key, events[key])
        due, now_announced = announcements(state, announced[key])
        changes.extend(Change(a.type, state.case_id, a.data, now) for a in due)
        saved.append((*key, state.case_type, state.status, state.opened_at, state.ended_at, state_as_json(state),
                      now_announced.as_json()))
    await store.save_cases(conn, saved)
    await outbox.add_many(conn, changes)
