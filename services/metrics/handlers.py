"""Events → the metrics schema, a batch at a time, inside the batch transaction of duban.consumer.

`check` turns each event into the change it makes (services/metrics/store.py), which the consumer
keeps on the event for `apply_batch`, and refuses what can never apply (an unknown case type,
indicator or task, an impossible clock, a report from the wrong department or in the wrong unit)
before anything is written; `apply_batch` applies the batch's changes in order with one statement
per table (store.MetricsBatch)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import asyncpg

from duban.catalog import Catalog
from duban.catalog.models import Task
from duban.consumer import InboundEvent, PermanentEventError
from duban.events.models import (
    IndicatorValueReported,
    TaskLightChanged,
    TaskUpdated,
    TrackedCaseCancelled,
    TrackedCaseClosed,
    TrackedCaseOpened,
    source_department,
)
from duban.events.registry import Dispatch
from duban.workcal import OfficeHours
from services.metrics import store
from services.metrics.domain.indicators import civil_date, read_clock

def cause_of(event: InboundEvent) -> str:
    return f"{event.ce['source']} {event.ce['id']}"


class MetricsHandlers:
    """Tracker change events (tasks and cases) and department reports of indicator figures."""

    def __init__(self, catalog: Catalog, hours: OfficeHours) -> None:
        self.catalog, self.hours = catalog, hours
        # Each turns the event, as its model, into the change it makes. Other change events (milestones,
        # case warnings) are the notifier's; the ledger still records them.
        self._changes: Dispatch[Callable] = Dispatch({
            TaskUpdated: self.task_updated, TaskLightChanged: self.light_changed,
            TrackedCaseOpened: self.case_opened, TrackedCaseClosed: self.case_closed,
            TrackedCaseCancelled: self.case_cancelled, IndicatorValueReported: self.value_reported})

    def check(self, event: InboundEvent) -> store.Change | None:
        """The change `event` makes (None: not the metrics service's), or PermanentEventError. The consumer
        keeps it as `event.prepared` for apply_batch, so a closing's clock (≈ 65 µs) is read once."""
        if found := self._changes.route(event.type):
            model, change = found
            return change(model.model_validate(event.ce), cause_of(event))
        return None

    async def apply_batch(self, conn: asyncpg.Connection, events: Sequence[InboundEvent]) -> None:
        if changes := [event.prepared for event in events if event.prepared is not None]:
            await store.MetricsBatch(conn, self.catalog).apply(changes)

    def _task(self, task_id: str) -> Task:
        try:
            return self.catalog.task(task_id)
        except KeyError:
            raise PermanentEventError("unknown_task", f"no task {task_id!r} in the plan catalog") from None

    def task_updated(self, event: TaskUpdated, cause: str) -> store.TaskState:
        task, data = self._task(event.subject), event.data
        return store.TaskState(task_id=task.id, area=task.area, lead=list(task.lead), status=data.status,
                               light=data.light, percent=data.percent, as_of=data.reported_at)

    def light_changed(self, event: TaskLightChanged, cause: str) -> store.TaskLight:
        task = self._task(event.subject)
        return store.TaskLight(task_id=task.id, area=task.area, lead=list(task.lead), light=event.data.to)

    def _known_case_type(self, case_type: str) -> None:
        if case_type not in self.catalog.case_types:
            raise PermanentEventError("unknown_case_type", f"no case type {case_type!r} in the plan catalog")

    def case_opened(self, event: TrackedCaseOpened, cause: str) -> store.CaseOpened:
        self._known_case_type(event.data.case_type)
        return store.CaseOpened(case_id=event.subject, case_type=event.data.case_type,
                                department=event.data.department, opened_at=event.data.opened_at)

    def case_closed(self, event: TrackedCaseClosed, cause: str) -> store.ClosedCase:
        data = event.data
        self._known_case_type(data.case_type)
        pauses = [(p.from_, p.to, p.reason.value) for p in data.paused_intervals]
        try:
            reading = read_clock(self.hours, opened_at=data.opened_at, closed_at=data.closed_at, pauses=pauses)
        except ValueError as exc:  # closed before opened, a pause ending before it starts
            raise PermanentEventError("impossible_clock", str(exc)) from exc
        return store.ClosedCase(
            case_id=event.subject, case_type=data.case_type, department=data.department, opened_at=data.opened_at,
            closed_at=data.closed_at, closed_on=civil_date(data.closed_at), outcome=data.outcome,
            handled_instantly=data.handled_instantly, trips=data.trips, steps=data.steps,
            paused_intervals=[p.model_dump(mode="json", by_alias=True) for p in data.paused_intervals],
            reading=reading, calendar_version=self.hours.calendar.version, cause=cause)

    def case_cancelled(self, event: TrackedCaseCancelled, cause: str) -> store.CaseCancelled:
        data = event.data
        self._known_case_type(data.case_type)
        return store.CaseCancelled(case_id=event.subject, case_type=data.case_type, department=data.department,
                                   opened_at=data.opened_at, cancelled_at=data.cancelled_at, cause=cause)

    def value_reported(self, event: IndicatorValueReported, cause: str) -> store.Report:
        department = source_department(event.source)
        try:
            ind = self.catalog.indicator(event.subject)
        except KeyError:
            raise PermanentEventError("unknown_indicator", f"no indicator {event.subject!r} in the plan") from None
        if ind.feed.kind != "report":
            raise PermanentEventError("not_reported", f"{ind.id} is computed from {ind.feed.case_type} cases")
        if department not in ind.feed.departments:
            raise PermanentEventError("not_the_reporter", f"{department} does not report {ind.id}"
                                      f" (reported by {', '.join(ind.feed.departments)})")
        if event.data.unit != ind.unit:
            raise PermanentEventError("wrong_unit", f"{ind.id} is in {ind.unit}, the report says {event.data.unit}")
        return store.Report(source=event.source, event_id=event.id, indicator_id=ind.id, period=event.data.period,
                            department=department, value=event.data.value, unit=event.data.unit,
                            note=event.data.note, reported_at=event.time)
