"""What changes as time passes, without any event: lights and milestone states (re-evaluation), and
open cases nearing their allowed time (case warnings)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime, time, timedelta

import asyncpg
import structlog
from prometheus_client import Counter

from duban import outbox
from duban.catalog import Catalog
from duban.consumer import TRANSIENT_ERRORS
from duban.events.models import CaseWarning
from duban.workcal import SHANGHAI, CalendarCoverageError, OfficeHours
from services.tracker import store
from services.tracker.domain.instants import utc
from services.tracker.domain.warnings import case_limits, newly_crossed, usage
from services.tracker.evaluation import TaskEvaluator

log = structlog.get_logger(__name__)


def seconds_until_midnight(now: datetime) -> float:
    """Seconds until the next civil midnight in Asia/Shanghai, when a deadline day turns over."""
    local = now.astimezone(SHANGHAI)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(0), SHANGHAI)
    return (midnight - local).total_seconds()


async def reevaluate_all(pool: asyncpg.Pool, evaluator: TaskEvaluator, now: datetime) -> int:
    async with pool.acquire() as conn, conn.transaction():
        return await evaluator.refresh(conn, await store.all_task_ids(conn), now)


def reevaluation_job(evaluator: TaskEvaluator, clock: Callable[[], datetime], interval_s: float):
    """A background job for StreamService: evaluate every task now, then every `interval_s` and
    just after each Shanghai midnight. A failed round is logged and retried at the next one."""

    async def reevaluate_lights(pool: asyncpg.Pool) -> None:
        while True:
            now = clock()
            try:
                changes = await reevaluate_all(pool, evaluator, now)
                log.info("tasks re-evaluated", as_of=now.isoformat(), changes=changes)
            except TRANSIENT_ERRORS as exc:
                log.warning("task re-evaluation failed; retrying at the next round", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(min(interval_s, seconds_until_midnight(now) + 1))

    return reevaluate_lights


# -- case warnings ---------------------------------------------------------------------------------

CASE_WARNINGS = Counter("duban_tracker_case_warnings_total", "Case warnings announced", ["case_type", "threshold"])
WARNING_BATCH = 500


class CaseWarner:
    """Finds open cases that passed 50, 75 or 100 % of their allowed time and announces each
    (case, threshold) once, through the outbox, in the transaction that records it."""

    def __init__(self, catalog: Catalog, hours: OfficeHours) -> None:
        self.limits, self.hours = case_limits(catalog), hours

    async def check(self, pool: asyncpg.Pool, now: datetime) -> int:
        announced, after = 0, ("", "")
        while True:
            async with pool.acquire() as conn, conn.transaction():
                rows = await store.open_cases_to_warn(conn, list(self.limits), after, WARNING_BATCH)
                for row in rows:
                    announced += await self._check_case(conn, row, now)
            if len(rows) < WARNING_BATCH:
                return announced
            after = (rows[-1]["department"], rows[-1]["case_id"])

    async def _check_case(self, conn: asyncpg.Connection, row: asyncpg.Record, now: datetime) -> int:
        state = json.loads(row["state"])
        pauses = [(store.parse_time(p["from"]), store.parse_time(p["to"]), p["reason"]) for p in state["paused_intervals"]]
        if state["paused_since"]:
            pauses.append((store.parse_time(state["paused_since"]["from"]), None, state["paused_since"]["reason"]))
        try:
            used = usage(self.limits[row["case_type"]], self.hours, opened_at=row["opened_at"], now=now, pauses=pauses)
        except CalendarCoverageError as exc:
            log.error("working-day calendar lacks a year; case not checked for warnings", case_id=row["case_id"],
                      department=row["department"], year=exc.year)
            return 0
        crossed = newly_crossed(used, row["warned"])
        if not crossed or max(crossed) not in await store.record_warnings(
                conn, row["department"], row["case_id"], crossed, used.limit.indicator, now):
            return 0
        data = {"department": row["department"], "case_type": row["case_type"], "opened_at": utc(row["opened_at"]),
                "threshold": max(crossed), "indicator": used.limit.indicator, "unit": used.limit.unit,
                "allowed": used.limit.allowed, "elapsed": round(used.elapsed, 2), "as_of": utc(now),
                "paused": state["paused_since"] is not None}
        data |= {k: state[k] for k in ("reference", "title") if state.get(k) is not None}
        await outbox.add_many(conn, [outbox.Change(CaseWarning, row["case_id"], data, now)])
        CASE_WARNINGS.labels(row["case_type"], str(max(crossed))).inc()
        return 1


def case_warning_job(warner: CaseWarner, clock: Callable[[], datetime], interval_s: float):
    """A background job for StreamService: check the open cases every `interval_s`; a failed round is
    logged and the next one starts over (each threshold is recorded with its announcement)."""

    async def warn_cases(pool: asyncpg.Pool) -> None:
        while True:
            now = clock()
            try:
                announced = await warner.check(pool, now)
                if announced:
                    log.info("case warnings announced", as_of=now.isoformat(), count=announced)
            except TRANSIENT_ERRORS as exc:
                log.warning("case warning check failed; retrying at the next round", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(interval_s)

    return warn_cases
