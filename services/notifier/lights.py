"""Following task lights from tracker change events; a light turning yellow or red starts escalation."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import structlog
from prometheus_client import Counter

from duban.catalog import Catalog
from duban.consumer import InboundEvent

log = structlog.get_logger(__name__)

TASK_UPDATED = "duban.tracker.task.updated.v1"
LIGHT_CHANGES = Counter("duban_notifier_light_changes_total", "Task light changes seen", ["light"])

# DESIGN §5: yellow → level 1 (the responsible units), red → level 2 (the lead department).
FIRST_LEVEL_FOR_LIGHT = {"yellow": 1, "red": 2}


async def apply_task_updated(conn: asyncpg.Connection, event: InboundEvent, catalog: Catalog) -> None:
    data, at, task = event.ce["data"], datetime.fromisoformat(event.ce["time"]), catalog.task(event.ce["subject"])
    previous = await conn.fetchval("SELECT light FROM task_lights WHERE task_id = $1", task.id)
    await conn.execute(
        "INSERT INTO task_lights (task_id, light, since, lead, responsible) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (task_id) DO UPDATE SET lead = EXCLUDED.lead, responsible = EXCLUDED.responsible,"
        " light = EXCLUDED.light, since = CASE WHEN task_lights.light = EXCLUDED.light THEN task_lights.since"
        " ELSE EXCLUDED.since END",
        task.id, data["light"], at, list(task.lead), list(task.responsible))
    if previous != data["light"]:
        LIGHT_CHANGES.labels(data["light"]).inc()
        level = FIRST_LEVEL_FOR_LIGHT.get(data["light"])
        if level:
            recipients = task.responsible if level == 1 else task.lead
            log.info("escalation due", task=task.id, light=data["light"], level=level, recipients=recipients)
