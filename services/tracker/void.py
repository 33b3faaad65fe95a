"""Voiding an applied event: the district office's answer to an event that took effect and is wrong.

A void is recorded in `voided_events` (who, when, why; append-only), the event's row stays where it
is, and every fold skips it from then on (store._NOT_VOIDED): the task or case it touched is
re-derived in the same transaction and the resulting change events go out through the outbox, as
for any other change. The ledger keeps the event's (source, id), so a redelivery of it stays
skipped, and `duban replay tracker` carries the voids over into the rebuilt schema.

`void_event` is what a route calls; `duban events void` calls it from the command line."""

from __future__ import annotations

import argparse
import asyncio
import getpass
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import structlog

from duban.catalog import load_catalog
from duban.pg import create_pool
from duban.workcal import WorkingCalendar
from services.tracker import store
from services.tracker.evaluation import TaskEvaluator
from services.tracker.handlers import refold_cases
from services.tracker.settings import TrackerSettings

log = structlog.get_logger(__name__)

class VoidRefused(Exception):
    """The void cannot be recorded; `status` is the HTTP status a route answers with."""

    def __init__(self, status: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail


@dataclass(frozen=True)
class Voided:
    source: str
    event_id: str
    type: str
    subject: str
    reason: str
    principal: str
    voided_at: datetime
    changes: int  # change events recorded in the outbox by the re-derivation


async def void_event(conn: asyncpg.Connection, source: str, id: str, reason: str, principal: str, *,
                     evaluator: TaskEvaluator | None = None, now: datetime | None = None) -> Voided:
    """Void the applied event (source, id) for `reason`, on behalf of `principal`, and re-derive what it
    touched as of `now` (default: the tracker's clock). Raises VoidRefused: 404 for an event the tracker
    never applied, 409 for one voided before, 400 for an empty reason or principal."""
    if not reason.strip() or not principal.strip():
        raise VoidRefused(400, "invalid-void", "a void needs a reason and the principal who asks for it")
    now = now or TrackerSettings().clock()
    async with conn.transaction():
        found = await store.find_applied_event(conn, source, id)
        if found is None:
            raise VoidRefused(404, "event-not-found", f"the tracker has applied no event {id} from {source}")
        voided_at = await store.record_void(conn, source, id, found["type"], found["subject"], reason.strip(),
                                            principal.strip())
        if voided_at is None:
            raise VoidRefused(409, "already-voided", f"event {id} from {source} was voided before")
        last_seq = await store.last_outbox_seq(conn)
        if found["kind"] == "task":
            evaluator = evaluator or TaskEvaluator(load_catalog(), WorkingCalendar())
            await evaluator.refresh(conn, [found["subject"]], now)
        else:
            await refold_cases(conn, [(found["department"], found["subject"])], now)
        changes = await store.outbox_rows_after(conn, last_seq)
    log.warning("event voided", source=source, event_id=id, type=found["type"], subject=found["subject"],
                reason=reason, principal=principal, changes=changes)
    return Voided(source, id, found["type"], found["subject"], reason.strip(), principal.strip(),
                  voided_at, changes)


def register(subcommands) -> None:
    parser = subcommands.add_parser("events", help="act on events the tracker applied")
    actions = parser.add_subparsers(dest="action", required=True)
    voiding = actions.add_parser("void", help="void an applied event and re-derive the task or case without it")
    voiding.add_argument("source", help="the event's source, e.g. /departments/district-court")
    voiding.add_argument("id", help="the event's id")
    voiding.add_argument("--reason", required=True, help="why it is void (kept with the void)")
    voiding.add_argument("--principal", default=None,
                         help="who voids it (default: the operating-system user, as cli:<user>)")

    async def run(args: argparse.Namespace) -> int:
        settings = TrackerSettings()
        pool = await create_pool(settings.database_url, settings.schema_name, max_size=1)
        try:
            async with pool.acquire() as conn:
                voided = await void_event(conn, args.source, args.id, args.reason,
                                          args.principal or f"cli:{getpass.getuser()}", now=settings.clock())
        except VoidRefused as refused:
            print(f"duban events void: {refused.detail}")
            return 1
        finally:
            await pool.close()
        print(f"voided {voided.type} {voided.event_id} of {voided.subject} ({voided.principal}, {voided.voided_at:%Y-%m-%dT%H:%M:%SZ});"
              f" {voided.changes} change event(s) recorded for the relay")
        return 0

    voiding.set_defaults(handler=lambda args: asyncio.run(run(args)))
