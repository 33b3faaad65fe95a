"""The tracker's read API: tasks with their milestones and history, cases, departments."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Literal

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Path, Query
from pydantic import BaseModel, Field

from duban.api_deps import (PAGE_SIZE_DEFAULT, ChangingPrincipal, Clock, CurrentPrincipal, Limit, Offset, PlanCatalog,
                            Pool, authenticated, from_app_state)
from duban.auth import Principal, forbidden
from duban.catalog import Catalog
from duban.clock import now as one_clock_now
from duban.events.models import (
    LightReasonValue, LightValue, MilestoneViewStatusValue, TaskStatusValue, TaskViewStatusValue,
)
from duban.pg import BIGINT_MAX
from duban.problems import Problem
from duban.workcal import WorkingCalendar
from services.tracker import extensions, store, verification
from services.tracker.domain.instants import civil_date
from services.tracker.evaluation import TaskEvaluator

DepartmentCode = Annotated[str, Query(pattern=r"^[a-z0-9-]+$", max_length=64)]


class Task(BaseModel):
    id: str
    area: str
    title: str
    lead: list[str]
    responsible: list[str]
    status: TaskViewStatusValue
    percent: int
    light: LightValue
    light_reason: LightReasonValue | None = Field(
        description="null until the first evaluation")
    light_as_of: datetime | None = Field(description="when the light last changed")
    light_basis: Literal["working_days", "calendar_days"] = Field(
        description="calendar_days: the working-day calendar lacks `light_uncovered_year`, so the 10-working-day"
                    " rule was applied as 14 calendar days")
    light_uncovered_year: int | None
    provisional: bool = Field(
        False, description="the light counts working days in a provisional calendar year (statutory holidays only,"
                           " no 补假 or 调休 until the State Council notice; docs/calendar.md)")
    next_due: date | None = Field(description="the deadline that decides the light")
    last_report_at: datetime | None = Field(description="event time of the current report")
    last_reporter: str | None = Field(description="source of the current report")
    last_event_id: str | None
    last_note: str | None
    evidence_url: str | None
    updated_at: datetime


VerificationStatus = Literal["awaiting", "verified", "returned"]


class Verification(BaseModel):
    """办结销号: a "done" (a done report, or a milestone completion) and the district office's decision on it."""

    task_id: str
    milestone_id: str | None = Field(description="null: the task's done report")
    due: date | None = Field(description="the plan due date of the milestone's occurrence")
    source: str = Field(description="the report or completion judged: its source and event id")
    event_id: str
    requested_at: datetime = Field(description="its event time")
    grace_until: date = Field(description="unverified, the item is not red through this date")
    status: VerificationStatus
    outcome: Literal["verified", "returned"] | None
    reason: str | None
    decided_by: str | None = Field(description="the token subject that decided")
    decided_at: datetime | None


class VerificationDecision(BaseModel):
    outcome: Literal["verified", "returned"]
    reason: str | None = Field(None, min_length=1, max_length=2000, pattern=r"\S",
                               description="why it is returned (required then)")


class VerificationPage(BaseModel):
    items: list[Verification] = Field(description="oldest request first")
    total: int
    limit: int
    offset: int


class Report(BaseModel):
    source: str
    event_id: str
    event_time: datetime
    status: TaskStatusValue
    percent: int
    note: str | None
    evidence_url: str | None
    verification: Verification | None = Field(None, description="a done report: its verification")


ExtensionStatus = Literal["requested", "approved", "rejected"]


class ExtensionRequest(BaseModel):
    """延期申请: move one occurrence of the milestone to a later date."""

    new_due: date = Field(description="the date asked for; after the occurrence's current deadline")
    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S")
    evidence: list[Annotated[str, Field(min_length=1, max_length=2000)]] = Field(
        default_factory=list, max_length=20, description="links to the evidence")
    due: date | None = Field(None, description="the plan due date of the occurrence to move (a yearly milestone has"
                                               " one a year); default: its earliest occurrence not done")


class ExtensionDecision(BaseModel):
    decision: Literal["approve", "reject"]
    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S")


class Extension(BaseModel):
    id: int
    task_id: str
    milestone_id: str
    original_due: date = Field(description="the plan due date of the occurrence")
    requested_due: date
    reason: str
    evidence: list[str]
    requested_by: str = Field(description="the token subject that asked")
    requested_at: datetime
    status: ExtensionStatus
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None


class ExtensionPage(BaseModel):
    items: list[Extension]
    total: int
    limit: int
    offset: int


class MilestoneOccurrence(BaseModel):
    milestone_id: str
    original_due: date = Field(description="the plan's due date")
    due: date = Field(description="the deadline in force: the latest approved extension's date, else `original_due`")
    extensions: list[Extension] = Field(description="every extension request about this occurrence, oldest first")
    starts: date
    status: MilestoneViewStatusValue
    verification: Verification | None = Field(
        None, description="the completion awaiting verification, else the latest decision on this occurrence")
    retroactive: bool = Field(False, description="due before the plan was issued: judged by `grace_until`")
    grace_until: date | None = Field(None, description="a retroactive milestone turns overdue after this date")
    done_at: datetime | None
    done_by: str | None
    done_event_id: str | None
    status_as_of: datetime


class MilestoneCompletion(BaseModel):
    source: str
    event_id: str
    milestone_id: str
    event_time: datetime
    note: str | None
    evidence_url: str | None


class TaskDetail(Task):
    history_total: int = Field(description="how many reports the task has; GET /v1/tasks/{task_id}/history pages them")
    verification: Verification | None = Field(
        None, description="the done report awaiting verification, else the latest decision on one")
    verifications: list[Verification] = Field(
        default_factory=list, description="every done report and completion awaiting or decided, oldest first")
    milestones: list[MilestoneOccurrence]
    milestone_completions: list[MilestoneCompletion]


class TaskPage(BaseModel):
    items: list[Task]
    total: int
    limit: int
    offset: int


class TaskDetailPage(BaseModel):
    items: list[TaskDetail] = Field(description="each task as GET /v1/tasks/{task_id} shows it")
    total: int
    limit: int
    offset: int


class ReportPage(BaseModel):
    items: list[Report] = Field(description="reports, the latest (in event time) first")
    total: int
    limit: int
    offset: int


class CaseStep(BaseModel):
    step: str
    step_name: str | None
    at: datetime


class CaseInterval(BaseModel):
    from_: datetime = Field(alias="from")
    to: datetime
    reason: str


class CaseEventRecord(BaseModel):
    source: str
    event_id: str
    type: str
    event_time: datetime
    data: dict


class Case(BaseModel):
    department: str
    case_id: str
    case_type: str | None
    status: Literal["pending", "open", "paused", "closed", "cancelled"]
    opened_at: datetime | None
    reference: str | None
    title: str | None
    steps: list[CaseStep]
    paused_intervals: list[CaseInterval]
    paused_since: dict | None
    closed_at: datetime | None
    cancelled_at: datetime | None
    outcome: str | None
    handled_instantly: bool | None
    trips: int | None
    cancel_reason: str | None
    problem: str | None = Field(description="why the case cannot be announced yet (e.g. no opening event)")
    ignored: list[dict] = Field(description="events kept in the record that changed nothing, and why")
    events: int
    last_event_at: datetime | None
    updated_at: datetime
    history: list[CaseEventRecord]


class OpenCase(BaseModel):
    case_id: str
    case_type: str | None
    status: Literal["pending", "open", "paused"]
    opened_at: datetime | None


class DepartmentView(BaseModel):
    code: str
    name: str
    tasks: list[Task]
    open_cases: list[OpenCase]
    open_cases_total: int
    limit: int
    offset: int


# Every route needs a bearer token; a department sees only its own tasks and cases (duban/auth.py).
router = APIRouter(prefix="/v1", dependencies=[Depends(authenticated)])
Evaluator = Annotated[TaskEvaluator, Depends(from_app_state("evaluator"))]


def install(app: FastAPI, catalog: Catalog, evaluator: TaskEvaluator | None = None,
            clock: Callable[[], datetime] = one_clock_now) -> FastAPI:
    """Put on app.state what the routes read besides the pool and the token verifier; returns the app."""
    app.state.catalog, app.state.clock = catalog, clock
    app.state.evaluator = evaluator or TaskEvaluator(catalog, WorkingCalendar())
    return app


def with_calendar(task: dict, evaluator: TaskEvaluator, now: datetime) -> dict:
    """What the stored light rests on: a provisional calendar year between today and its deadline."""
    due = task["next_due"]
    counted = task["light_basis"] == "working_days" and task["light_reason"] in ("on_track", "deadline_near")
    task["provisional"] = bool(due and counted and evaluator.calendar.touches_provisional(civil_date(now), due))
    return task


def with_grace(milestone: dict, evaluator: TaskEvaluator) -> dict:
    retroactive = milestone["original_due"] < evaluator.catalog.plan.issued
    return {**milestone, "retroactive": retroactive, "grace_until": evaluator.grace_until if retroactive else None}


def department_or_404(catalog: Catalog, code: str):
    try:
        return catalog.department(code)
    except KeyError:
        raise Problem(404, "department-not-found", f"no department {code!r} in the plan catalog") from None


def task_or_404(catalog: Catalog, principal: Principal, task_id: str) -> None:
    if task_id not in {t.id for t in catalog.tasks}:
        raise Problem(404, "task-not-found", f"no task {task_id!r}; the plan's tasks are T01–T28")
    principal.require_task(catalog, task_id)


async def case_of(pool: asyncpg.Pool, department: str, case_id: str) -> dict:
    async with pool.acquire() as conn:
        case = await store.get_case(conn, department, case_id)
    if case is None:
        raise Problem(404, "case-not-found", f"{department} has no case {case_id!r} the tracker knows of")
    return case


def refused(refusal: extensions.ExtensionRefused) -> Problem:
    return Problem(refusal.status, refusal.kind, refusal.detail)


@router.get("/tasks", response_model=TaskPage | TaskDetailPage)
async def list_tasks(
    pool: Pool,
    principal: CurrentPrincipal,
    catalog: PlanCatalog,
    evaluator: Evaluator,
    clock: Clock,
    area: Annotated[str | None, Query(pattern=r"^A[1-8]$")] = None,
    department: DepartmentCode | None = None,
    status: TaskViewStatusValue | None = None,
    light: LightValue | None = None,
    include: Annotated[Literal["milestones"] | None, Query(
        description="milestones: each task as GET /v1/tasks/{task_id} shows it, milestones and verifications"
                    " included, in this one call")] = None,
    limit: Limit = PAGE_SIZE_DEFAULT,
    offset: Offset = 0,
) -> TaskPage | TaskDetailPage:
    task_ids = principal.visible_tasks(catalog)
    if department is not None:
        department_or_404(catalog, department)
        principal.require_department(department, "tasks")
        task_ids = [t.id for t in catalog.tasks_of_department(department)]
    async with pool.acquire() as conn:
        items, total = await store.list_tasks(conn, area=area, task_ids=task_ids, status=status, light=light,
                                              limit=limit, offset=offset)
        if include == "milestones":
            items = await store.with_milestones(conn, items)
            verifications, _ = await verification.list_verifications(
                conn, evaluator, status=None, task_ids=[t["id"] for t in items], limit=10_000, offset=0)
    now = clock()
    if include == "milestones":
        return TaskDetailPage(items=[detail(t, [v for v in verifications if v["task_id"] == t["id"]], evaluator, now)
                                     for t in items], total=total, limit=limit, offset=offset)
    return TaskPage(items=[with_calendar(t, evaluator, now) for t in items], total=total, limit=limit, offset=offset)


@router.get("/tasks/{task_id}", response_model=TaskDetail)
async def get_task(pool: Pool, principal: CurrentPrincipal, catalog: PlanCatalog, evaluator: Evaluator, clock: Clock,
                   task_id: str) -> dict:
    """The task with its milestones; its reports are paged by GET /v1/tasks/{task_id}/history."""
    task_or_404(catalog, principal, task_id)
    async with pool.acquire() as conn:
        task = await store.get_task(conn, task_id)
        verifications = await verification.of_task(conn, evaluator, task_id)
    if task is None:
        raise Problem(404, "task-not-found", f"no task {task_id!r}; the plan's tasks are T01–T28")
    return detail(task, verifications, evaluator, clock())


def detail(task: dict, verifications: list[dict], evaluator: TaskEvaluator, now: datetime) -> dict:
    """A task with its milestones (store.with_milestones) as TaskDetail shows it, given its verifications."""
    milestones = [{**with_grace(m, evaluator), "verification": verification.current(verifications, m["milestone_id"],
                                                                                  m["original_due"])}
                  for m in task["milestones"]]
    return {**with_calendar(task, evaluator, now), "milestones": milestones, "verifications": verifications,
            "verification": verification.current(verifications, None, None)}


@router.get("/tasks/{task_id}/history", response_model=ReportPage)
async def get_task_history(pool: Pool, principal: CurrentPrincipal, catalog: PlanCatalog, evaluator: Evaluator,
                           task_id: str, limit: Limit = PAGE_SIZE_DEFAULT, offset: Offset = 0) -> ReportPage:
    task_or_404(catalog, principal, task_id)
    async with pool.acquire() as conn:
        items, total = await store.task_history(conn, task_id, limit=limit, offset=offset)
        judged = {(v["source"], v["event_id"]): v for v in await verification.of_task(conn, evaluator, task_id)
                  if v["milestone_id"] is None}
    return ReportPage(items=[{**r, "verification": judged.get((r["source"], r["event_id"]))} for r in items],
                      total=total, limit=limit, offset=offset)


@router.get("/cases/{case_id}", response_model=Case, response_model_by_alias=True)
async def get_case(pool: Pool, principal: CurrentPrincipal, case_id: str,
                   department: DepartmentCode | None = None) -> dict:
    """A case by its id; case ids are unique per department, so `department` is needed when two share one.
    A department's token looks among its own cases only."""
    department = department or principal.department
    if department is not None:
        principal.require_department(department, "cases")
    else:
        async with pool.acquire() as conn:
            departments = await store.departments_of_case(conn, case_id)
        if len(departments) > 1:
            raise Problem(409, "ambiguous-case", f"case id {case_id!r} exists in several departments;"
                          " name one with ?department=", departments=departments)
        if not departments:
            raise Problem(404, "case-not-found", f"no case {case_id!r} the tracker knows of")
        department = departments[0]
    return await case_of(pool, department, case_id)


@router.get("/departments/{code}/cases/{case_id}", response_model=Case, response_model_by_alias=True)
async def get_department_case(pool: Pool, principal: CurrentPrincipal, catalog: PlanCatalog, code: str,
                              case_id: str) -> dict:
    department_or_404(catalog, code)
    principal.require_department(code, "cases")
    return await case_of(pool, code, case_id)


@router.get("/departments/{code}", response_model=DepartmentView)
async def get_department(pool: Pool, principal: CurrentPrincipal, catalog: PlanCatalog, evaluator: Evaluator,
                         clock: Clock, code: str, limit: Limit = PAGE_SIZE_DEFAULT, offset: Offset = 0) -> DepartmentView:
    """The department's tasks (as lead, responsible unit or member of a named collective) and its open cases."""
    department = department_or_404(catalog, code)
    principal.require_department(code, "department view")
    task_ids = [t.id for t in catalog.tasks_of_department(code)]
    async with pool.acquire() as conn:
        tasks, _ = await store.list_tasks(conn, area=None, task_ids=task_ids, status=None, light=None,
                                          limit=len(catalog.tasks), offset=0)
        cases, total = await store.open_cases(conn, code, limit=limit, offset=offset)
    now = clock()
    return DepartmentView(code=code, name=department.name, tasks=[with_calendar(t, evaluator, now) for t in tasks],
                          open_cases=cases, open_cases_total=total, limit=limit, offset=offset)


@router.post("/tasks/{task_id}/milestones/{milestone_id}/extensions", response_model=Extension, status_code=201)
async def request_extension(pool: Pool, principal: ChangingPrincipal, catalog: PlanCatalog, clock: Clock, task_id: str,
                            milestone_id: str, body: ExtensionRequest) -> dict:
    """A department asks to move a milestone of its own task; the district office decides."""
    task_or_404(catalog, principal, task_id)
    if principal.role != "department":
        raise forbidden("an extension is requested by a department that owns the task")
    async with pool.acquire() as conn:
        try:
            return await extensions.request_extension(
                conn, task_id, milestone_id, due=body.due, new_due=body.new_due, reason=body.reason,
                evidence=body.evidence, principal=principal.subject, now=clock())
        except extensions.ExtensionRefused as refusal:
            raise refused(refusal) from None


@router.post("/extensions/{extension_id}/decision", response_model=Extension)
async def decide_extension(pool: Pool, principal: ChangingPrincipal, evaluator: Evaluator, clock: Clock,
                           extension_id: Annotated[int, Path(ge=1, le=BIGINT_MAX)], body: ExtensionDecision) -> dict:
    """The district office approves (the milestone's deadline becomes the requested date) or rejects."""
    if principal.role != "district-office":
        raise forbidden("only the district office decides extension requests")
    async with pool.acquire() as conn:
        try:
            return await extensions.decide_extension(conn, evaluator, extension_id, approve=body.decision == "approve",
                                                     reason=body.reason, principal=principal.subject, now=clock())
        except extensions.ExtensionRefused as refusal:
            raise refused(refusal) from None


@router.get("/extensions", response_model=ExtensionPage)
async def list_extensions(pool: Pool, principal: CurrentPrincipal, catalog: PlanCatalog,
                          status: ExtensionStatus | None = None, limit: Limit = PAGE_SIZE_DEFAULT,
                          offset: Offset = 0) -> ExtensionPage:
    """Extension requests, oldest first; a department sees those about its own tasks."""
    async with pool.acquire() as conn:
        items, total = await store.list_extensions(conn, status=status, task_ids=principal.visible_tasks(catalog),
                                                   limit=limit, offset=offset)
    return ExtensionPage(items=items, total=total, limit=limit, offset=offset)


async def decide_verification(pool: asyncpg.Pool, principal: Principal, catalog: Catalog, evaluator: TaskEvaluator,
                              now: datetime, task_id: str, milestone_id: str | None, body: VerificationDecision) -> dict:
    task_or_404(catalog, principal, task_id)
    if milestone_id is not None and milestone_id not in {m.id for m in catalog.task(task_id).milestones}:
        raise Problem(404, "milestone-not-found", f"{task_id} has no milestone {milestone_id!r}")
    if principal.role != "district-office":
        raise forbidden("only the district office verifies or returns a completion")
    async with pool.acquire() as conn:
        try:
            return await verification.decide(conn, evaluator, task_id, milestone_id, outcome=body.outcome,
                                             reason=body.reason, principal=principal.subject, now=now)
        except verification.VerificationRefused as refusal:
            raise Problem(refusal.status, refusal.kind, refusal.detail) from None


@router.post("/tasks/{task_id}/verification", response_model=Verification)
async def verify_task(pool: Pool, principal: ChangingPrincipal, catalog: PlanCatalog, evaluator: Evaluator, clock: Clock,
                      task_id: str, body: VerificationDecision) -> dict:
    """销号 (verified) or return (returned, with a reason) the task's done report awaiting verification."""
    return await decide_verification(pool, principal, catalog, evaluator, clock(), task_id, None, body)


@router.post("/tasks/{task_id}/milestones/{milestone_id}/verification", response_model=Verification)
async def verify_milestone(pool: Pool, principal: ChangingPrincipal, catalog: PlanCatalog, evaluator: Evaluator,
                           clock: Clock, task_id: str, milestone_id: str, body: VerificationDecision) -> dict:
    """销号 or return the milestone's oldest occurrence whose completion awaits verification."""
    return await decide_verification(pool, principal, catalog, evaluator, clock(), task_id, milestone_id, body)


@router.get("/verifications", response_model=VerificationPage)
async def list_verifications(pool: Pool, principal: CurrentPrincipal, catalog: PlanCatalog, evaluator: Evaluator,
                             status: VerificationStatus | None = None, limit: Limit = PAGE_SIZE_DEFAULT,
                             offset: Offset = 0) -> VerificationPage:
    """Done reports and completions awaiting verification, and the decisions taken; a department sees its own tasks'."""
    async with pool.acquire() as conn:
        items, total = await verification.list_verifications(
            conn, evaluator, status=status, task_ids=principal.visible_tasks(catalog), limit=limit, offset=offset)
    return VerificationPage(items=items, total=total, limit=limit, offset=offset)
