"""The scheduled re-evaluation: lights and milestone states change as days pass, without any event."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, time, timedelta

import asyncpg
import structlog

from duban.consumer import TRANSIENT_ERRORS
from duban.workcal import SHANGHAI
from services.tracker import store
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
