"""Events → the metrics schema. Runs inside the batch transaction of duban.consumer."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from duban.catalog import Catalog
from duban.consumer import InboundEvent, PermanentEventError
from duban.events.models import (
    IndicatorValueReported,
    TaskLightChanged,
    TaskUpdated,
    TrackedCaseCancelled,
    TrackedCaseClosed,
    TrackedCaseOpened,
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
        # Each handler takes the event as its model and the cause its published values record.
        # Other change events (milestones, case warnings) are the notifier's; the ledger still records them.
        self._handlers: Dispatch[Callable] = Dispatch({
            TaskUpdated: self.task_updated, TaskLightChanged: self.light_changed,
            TrackedCaseOpened: self.case_opened, TrackedCaseClosed: self.case_closed,
            TrackedCaseCancelled: self.case_cancelled, IndicatorValueReported: self.value_reported})

    async def __call__(self, conn: asyncpg.Connection, event: InboundEvent) -> None:
        if found := self._handlers.route(event.type):
            model, handler = found
            await handler(conn, model.model_validate(event.ce), cause_of(event))

    async def task_updated(self, conn: asyncpg.Connection, event: TaskUpdated, cause: str) -> None:
        task, data = self.catalog.task(event.subject), event.data
        await store.save_task_state(conn, task_id=task.id, area=task.area, lead=list(task.lead), status=data.status,
                                    light=data.light, percent=data.percent, as_of=data.reported_at)

    async def light_changed(self, conn: asyncpg.Connection, event: TaskLightChanged, cause: str) -> None:
        task = self.catalog.task(event.subject)
        await store.save_task_light(conn, task_id=task.id, area=task.area, lead=list(task.lead), light=event.data.to)

    def _known_case_type(self, case_type: str) -> None:
        if case_type not in self.catalog.case_types:
            raise PermanentEventError("unknown_case_type", f"no case type {case_type!r} in the plan catalog")

    async def case_opened(self, conn: asyncpg.Connection, event: TrackedCaseOpened, cause: str) -> None:
        self._known_case_type(event.data.case_type)
        await store.open_case(conn, case_id=event.subject, case_type=event.data.case_type,
                              department=event.data.department, opened_at=event.data.opened_at)

    async def case_closed(self, conn: asyncpg.Connection, event: TrackedCaseClosed, cause: str) -> None:
        data = event.data
        self._known_case_type(data.case_type)
        pauses = [(p.from_, p.to, p.reason.value) for p in data.paused_intervals]
        try:
            reading = read_clock(self.hours, opened_at=data.opened_at, closed_at=data.closed_at, pauses=pauses)
        except ValueError as exc:  # closed before opened, a pause ending before it starts
            raise PermanentEventError("impossible_clock", str(exc)) from exc
        await store.close_case(conn, self.catalog, store.ClosedCase(
            case_id=event.subject, case_type=data.case_type, department=data.department, opened_at=data.opened_at,
            closed_at=data.closed_at, closed_on=civil_date(data.closed_at), outcome=data.outcome,
            handled_instantly=data.handled_instantly, trips=data.trips, steps=data.steps,
            paused_intervals=[p.model_dump(mode="json", by_alias=True) for p in data.paused_intervals],
            reading=reading, calendar_version=self.hours.calendar.version), cause=cause)

    async def case_cancelled(self, conn: asyncpg.Connection, event: TrackedCaseCancelled, cause: str) -> None:
        data = event.data
        self._known_case_type(data.case_type)
        await store.cancel_case(conn, self.catalog, case_id=event.subject, case_type=data.case_type,
                                department=data.department, opened_at=data.opened_at,
                                cancelled_at=data.cancelled_at, cause=cause)

    async def value_reported(self, conn: asyncpg.Connection, event: IndicatorValueReported, cause: str) -> None:
        department = event.source.removeprefix("/departments/")
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
        await store.record_report(
            conn, self.catalog, source=event.source, event_id=event.id, indicator_id=ind.id,
            period=event.data.period, department=department, value=event.data.value, unit=event.data.unit,
            note=event.data.note, reported_at=event.time)
