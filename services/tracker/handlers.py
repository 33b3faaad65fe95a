"""Department events → tracker state, a batch at a time, inside the batch transaction of duban.consumer.

`check` refuses what can never apply (an unknown task, a department acting outside its tasks or
case types) before anything is written; `apply_batch` stores the batch's reports, completions
and case events with one statement per table, then re-derives the touched tasks and cases."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache

import asyncpg
import orjson

from duban import outbox
from duban.catalog import Catalog
from duban.consumer import InboundEvent, PermanentEventError
from duban.events.models import CASE_EVENTS, TaskMilestoneCompleted, TaskProgressReported, source_department
from duban.events.registry import Dispatch
from duban.outbox import Change
from services.tracker import store
from services.tracker.domain.cases import announcements, fold_case, state_as_json
from services.tracker.evaluation import TaskEvaluator

@dataclass
class _Rows:
    """A batch's rows, one list per table the batch writes with one statement."""

    reports: list[tuple] = field(default_factory=list)
    completions: list[tuple] = field(default_factory=list)
    case_events: list[tuple] = field(default_factory=list)

    def add_report(self, ce: dict) -> None:
        data = ce["data"]
        self.reports.append((ce["source"], ce["id"], ce["subject"], store.parse_time(ce["time"]), data["status"],
                             data["percent"], data.get("note"), data.get("evidence_url")))

    def add_completion(self, ce: dict) -> None:
        data = ce["data"]
        self.completions.append((ce["source"], ce["id"], ce["subject"], data["milestone_id"],
                                 store.parse_time(ce["time"]), data.get("note"), data.get("evidence_url")))

    def add_case_event(self, ce: dict) -> None:
        self.case_events.append((ce["source"], ce["id"], source_department(ce["source"]), ce["subject"], ce["type"],
                                 store.parse_time(ce["time"]), orjson.dumps(ce["data"]).decode()))


# Other department events (indicator reports) are the metrics service's; the ledger records them.
_ROWS = Dispatch({TaskProgressReported: _Rows.add_report, TaskMilestoneCompleted: _Rows.add_completion,
                  **dict.fromkeys(CASE_EVENTS, _Rows.add_case_event)})


class TrackerHandlers:
    def __init__(self, catalog: Catalog, evaluator: TaskEvaluator, clock: Callable[[], datetime]) -> None:
        self.catalog, self.evaluator, self.clock = catalog, evaluator, clock
        self.task_ids = {t.id for t in catalog.tasks}
        # The catalog answers these by walking collectives; checked per event, they are worth keeping.
        self.may_report = cache(catalog.may_report_task)
        self.feeders = cache(catalog.case_type_departments)
        self._checks = Dispatch({TaskProgressReported: self._check_task, TaskMilestoneCompleted: self._check_milestone,
                                 **dict.fromkeys(CASE_EVENTS, self._check_case)})

    def check(self, event: InboundEvent) -> None:
        if check := self._checks.of(event.type):
            check(event.ce, source_department(event.ce["source"]))

    def _check_task(self, ce: dict, department: str) -> None:
        task_id = ce["subject"]
        if task_id not in self.task_ids:
            raise PermanentEventError("unknown_task", f"no task {task_id} in the plan")
        if not self.may_report(department, task_id):
            raise PermanentEventError("not_responsible", f"{department} neither leads nor is responsible for {task_id}")

    def _check_milestone(self, ce: dict, department: str) -> None:
        self._check_task(ce, department)
        task_id, milestone_id = ce["subject"], ce["data"]["milestone_id"]
        if milestone_id not in {m.id for m in self.catalog.task(task_id).milestones}:
            raise PermanentEventError("unknown_milestone", f"{task_id} has no milestone {milestone_id}")

    def _check_case(self, ce: dict, department: str) -> None:
        case_type = ce["data"]["case_type"]
        if department not in self.feeders(case_type):
            raise PermanentEventError("not_the_reporter", f"{department} does not send {case_type} cases")

    async def apply_batch(self, conn: asyncpg.Connection, events: Sequence[InboundEvent]) -> None:
        rows = _Rows()
        for event in events:
            if add := _ROWS.of(event.type):
                add(rows, event.ce)
        await store.insert_reports(conn, rows.reports)
        await store.insert_completions(conn, rows.completions)
        touched = {r[2] for r in rows.reports} | {c[2] for c in rows.completions}
        if touched:
            await self.evaluator.refresh(conn, touched, self.clock())
        if rows.case_events:
            await apply_case_events(conn, rows.case_events, self.clock())


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
        changes.extend(Change(a.model, state.case_id, a.data, now) for a in due)
        saved.append((*key, state.case_type, state.status, state.opened_at, state.ended_at, state_as_json(state),
                      now_announced.as_json()))
    await store.save_cases(conn, saved)
    await outbox.add_many(conn, changes)
