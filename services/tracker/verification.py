"""办结销号 with 复核: the district office verifies a department's "done" (销号) or returns it.

A progress report with status done makes its task await verification; a milestone completion makes
the occurrence it completes await it. Both are derived by TaskEvaluator.refresh from the events and
the decisions recorded here, so a replay reproduces them. A decision names the report or completion
it judges by its (source, id), records who decided, when and why in `verification_decisions`
(append-only), re-derives the task in the same transaction (a returned "done" counts as never having
happened, so the light resumes) and announces it (CompletionVerified or CompletionReturned)
through the outbox. Decision 020."""

from __future__ import annotations

from datetime import date, datetime

import asyncpg
import structlog

from duban import outbox
from duban.events.models import CompletionReturned, CompletionVerified
from duban.outbox import Change
from services.tracker import store
from services.tracker.domain.instants import civil_date, utc
from services.tracker.evaluation import TaskEvaluator

log = structlog.get_logger(__name__)

OUTCOME_EVENTS = {"verified": CompletionVerified, "returned": CompletionReturned}


class VerificationRefused(Exception):
    """Nothing can be decided; `status` is the HTTP status a route answers with."""

    def __init__(self, status: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail


async def _awaiting_request(conn: asyncpg.Connection, task_id: str, milestone_id: str | None) -> asyncpg.Record:
    """The report or completion awaiting verification: the task's current done report, or the
    milestone's oldest occurrence completed and undecided."""
    row = await store.awaiting_request(conn, task_id, milestone_id)
    what = (f"{task_id} has no done report awaiting verification" if milestone_id is None
            else f"no occurrence of {milestone_id} awaits verification")
    if row is None:
        raise VerificationRefused(409, "nothing-awaits-verification", what)
    return row


async def decide(conn: asyncpg.Connection, evaluator: TaskEvaluator, task_id: str, milestone_id: str | None, *,
                 outcome: str, reason: str | None, principal: str, now: datetime) -> dict:
    """Verify or return what awaits verification on the task (or on one of its milestones), re-derive
    the task as of `now` and announce the decision."""
    reason = reason.strip() if reason and reason.strip() else None
    if outcome == "returned" and reason is None:
        raise VerificationRefused(422, "reason-required", "a returned completion needs the reason it is returned for")
    async with conn.transaction():
        await store.lock_tasks(conn, [task_id])  # the task first, as every evaluation locks it
        request = await _awaiting_request(conn, task_id, milestone_id)
        row = await store.record_verification(conn, task_id, milestone_id, request, outcome=outcome, reason=reason,
                                              principal=principal, now=now)
        decision = view(evaluator, dict(row))
        # The decision goes out ahead of what it changes (lights, milestone states), so a consumer
        # knows why the light moved when it sees the light move.
        await outbox.add_many(conn, [Change(OUTCOME_EVENTS[outcome], task_id, announcement(decision, now), now)])
        await evaluator.refresh(conn, [task_id], now)
    log.info("completion decided", task=task_id, milestone=milestone_id, outcome=outcome, principal=principal,
             today=civil_date(now))
    return decision


def announcement(decision: dict, now: datetime) -> dict:
    data = {"request_source": decision["source"], "request_id": decision["event_id"],
            "requested_at": utc(decision["requested_at"]), "grace_until": decision["grace_until"].isoformat(),
            "decided_by": decision["decided_by"], "as_of": utc(now)}
    if decision["milestone_id"]:
        data |= {"milestone_id": decision["milestone_id"], "due": decision["due"].isoformat()}
    if decision["reason"]:
        data["reason"] = decision["reason"]
    return data


def view(evaluator: TaskEvaluator, row: dict) -> dict:
    """A request and its decision as the API shows it (outcome and decided_* null while it awaits)."""
    return {**row, "grace_until": evaluator.verification_grace(row["requested_at"]),
            "status": row.get("outcome") or "awaiting"}


async def list_verifications(conn: asyncpg.Connection, evaluator: TaskEvaluator, *, status: str | None,
                             task_ids: list[str] | None, limit: int, offset: int) -> tuple[list[dict], int]:
    rows, total = await store.verifications(conn, status=status, task_ids=task_ids, limit=limit, offset=offset)
    return [view(evaluator, dict(r)) for r in rows], total


async def of_task(conn: asyncpg.Connection, evaluator: TaskEvaluator, task_id: str) -> list[dict]:
    """Every request and decision about the task and its milestones, oldest request first."""
    items, _ = await list_verifications(conn, evaluator, status=None, task_ids=[task_id], limit=10_000, offset=0)
    return items


def current(verifications: list[dict], milestone_id: str | None, due: date | None) -> dict | None:
    """What the view shows of an item: the request awaiting, else the latest decision, else None."""
    mine = [v for v in verifications if (v["milestone_id"], v["due"]) == (milestone_id, due)]
    awaiting = [v for v in mine if v["status"] == "awaiting"]
    if awaiting:
        return awaiting[0]
    return max(mine, key=lambda v: v["decided_at"]) if mine else None
