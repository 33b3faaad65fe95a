"""Case warnings (the tracker's CaseWarning events) → notices: at 50 % and 75 % of a case's allowed time
to the department handling it, at 100 % to its task's lead departments too. Planned inside the
consumer's transaction, once per (case, threshold, channel, recipient) however often the event comes;
its log lines and counters wait for that transaction's commit (duban.consumer.AfterCommit)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from functools import partial

import asyncpg
import structlog

from duban.catalog import Catalog
from duban.catalog.models import CaseType, Department, Indicator
from duban.consumer import AfterCommit, InboundEvent, PermanentEventError
from duban.workcal import to_shanghai
from services.notifier import store
from services.notifier.domain.messages import CaseWarningNotice, names
from services.notifier.handlers import moment
from services.notifier.routes import Routes
from services.notifier.scheduler import UNROUTED

log = structlog.get_logger(__name__)

# Route levels a warning is sent at: the handling department as a reminder (提醒), the lead as an urge (催办).
HANDLER_LEVEL, LEAD_LEVEL = 1, 2


class CaseWarningPlanner:
    def __init__(self, catalog: Catalog, routes: Routes, sendable_from: Callable[[datetime], datetime],
                 clock: Callable[[], datetime]) -> None:
        self.catalog, self.routes, self.sendable_from, self.clock = catalog, routes, sendable_from, clock

    def check(self, event: InboundEvent) -> None:
        """Refuse, before anything is written, a warning naming what the plan does not have or an
        instant that does not read."""
        data = event.ce["data"]
        self._named(data)
        for key in ("opened_at", "as_of"):
            moment(data[key])

    def _named(self, data: dict) -> tuple[Indicator, Department, CaseType]:
        try:
            return (self.catalog.indicator(data["indicator"]), self.catalog.department(data["department"]),
                    self.catalog.case_type(data["case_type"]))
        except KeyError as exc:
            raise PermanentEventError("unknown_in_catalog", str(exc)) from None

    async def __call__(self, conn: asyncpg.Connection, event: InboundEvent, after_commit: list[AfterCommit]) -> None:
        data = event.ce["data"]
        indicator, department, case_type = self._named(data)
        lead = self.catalog.task(indicator.task).lead
        threshold = data["threshold"]
        to_lead = [code for code in lead if code != department.code] if threshold == 100 else []
        notice = CaseWarningNotice(
            case_id=event.ce["subject"], department=department.code, department_name=department.name,
            case_type=case_type.id, case_type_name=case_type.name, threshold=threshold, indicator=indicator.id,
            indicator_name=indicator.name, task_id=indicator.task, unit=data["unit"], allowed=data["allowed"],
            elapsed=data["elapsed"], opened_at=data["opened_at"], as_of=data["as_of"], paused=data["paused"],
            addressees=names(self.catalog, [department.code, *to_lead]), lead=names(self.catalog, lead),
            reference=data.get("reference"), case_title=data.get("title"))
        item = f"{department.code}/{event.ce['subject']}"
        # The day the case opened names its one life: a repeated or re-announced warning plans nothing new.
        window = to_shanghai(moment(data["opened_at"])).date()
        now = self.clock()
        await store.record_case_warning(conn, department=department.code, case_id=event.ce["subject"],
                                        threshold=threshold, as_of=moment(data["as_of"]), notice=notice.as_json())
        for codes, level in (([department.code], HANDLER_LEVEL), (to_lead, LEAD_LEVEL)):
            await self._plan(conn, item, threshold, window, notice, codes, level, now, after_commit)

    async def _plan(self, conn: asyncpg.Connection, item: str, threshold: int, window: date,
                    notice: CaseWarningNotice, codes: list[str], level: int, now: datetime,
                    after_commit: list[AfterCommit]) -> None:
        reached, unrouted = self.routes.plan(codes, level)
        for target, departments in reached.items():
            if await store.plan_delivery(conn, kind=notice.KIND, escalation_id=None, item=item, level=threshold,
                                         window=window, channel=target.channel, recipient=target.recipient,
                                         departments=departments, notice=notice.as_json(),
                                         not_before=self.sendable_from(now), now=now):
                after_commit.append(partial(log.info, "case warning planned", item=item, threshold=threshold,
                                            recipient=target.recipient))
        for code in unrouted:
            after_commit.append(UNROUTED.labels(code, str(level)).inc)
            after_commit.append(partial(log.warning, "no address for a department; case warning not sent",
                                        department=code, item=item, threshold=threshold))
