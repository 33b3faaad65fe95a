"""The board's pages and exports. Every route needs a signed-in session (services/board/session.py) except
the sign-in form itself; each page asks the read APIs with the user's own token and renders what they answer."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from duban.api_deps import Pool
from duban.auth import forbidden
from duban.catalog import Catalog
from duban.problems import Problem
from services.board import bulletins, store
from services.board.clients import ReadApis
from services.board.documents import DOCX
from services.board.domain import bulletin as bulletin_domain
from services.board.domain import scorecard, tables, views
from services.board.exports import CSV, XLSX, to_csv, to_xlsx
from services.board.session import COOKIE, CSRF_FIELD, CurrentSession, Session, signed_in

TaskId = Annotated[str, Path(pattern=r"^T[0-9]{2}$")]
MilestoneId = Annotated[str, Path(pattern=r"^T[0-9]{2}-M[0-9]{1,2}$")]
IndicatorId = Annotated[str, Path(pattern=r"^[a-z0-9_]+$", max_length=64)]
# The filter forms send an empty value for "all": each filter takes it as no filter.
DepartmentCode = Annotated[str | None, Query(pattern=r"^[a-z0-9-]*$", max_length=64)]
PeriodQuery = Annotated[str | None, Query(pattern=r"^([1-9][0-9]{3}(-Q[1-4]|-(0[1-9]|1[0-2]))?)?$")]
PageNumber = Annotated[int, Query(ge=1, le=100_000)]
Format = Annotated[Literal["xlsx", "csv"], Path()]
HISTORY_PAGE = 10
CASES_PAGE = 50

# The sign-in form is the one page without a session.
public = APIRouter()
pages = APIRouter(dependencies=[Depends(signed_in)])


def catalog_of(request: Request) -> Catalog:
    return request.app.state.catalog


def apis_of(request: Request) -> ReadApis:
    return request.app.state.apis


def today_of(request: Request) -> date:
    return request.app.state.today()


def render(request: Request, template: str, session: Session | None, status_code: int = 200, **context) -> HTMLResponse:
    return request.app.state.templates.TemplateResponse(
        request, template, {"session": session, "catalog": catalog_of(request), "views": views, **context},
        status_code=status_code)


# -- sign-in ----------------------------------------------------------------------------------------


def safe_next(target: str | None) -> str:
    """Only a path of this board: never an absolute or scheme-relative URL (no open redirect)."""
    return target if target and target.startswith("/") and not target.startswith("//") else "/"


@public.get("/signin", response_class=HTMLResponse)
async def signin_form(request: Request, next: str | None = None) -> HTMLResponse:
    return render(request, "signin.html", None, next=safe_next(next))


@public.post("/signin")
async def signin(request: Request, token: Annotated[str, Form(max_length=8000)],
                 next: Annotated[str | None, Form()] = None) -> Response:
    token = token.strip().removeprefix("Bearer ").strip()
    try:
        await request.app.state.verifier.verify(token)
    except Problem as problem:
        return render(request, "signin.html", None, status_code=401, next=safe_next(next), error=problem.detail)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.app.state.settings.cookie_secure,
                        path="/")
    return response


@pages.post("/signout")
async def signout(session: CurrentSession, csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None) -> Response:
    session.check_csrf(csrf)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# -- 总览 ---------------------------------------------------------------------------------------------


@pages.get("/", response_class=HTMLResponse)
async def overview(request: Request, session: CurrentSession,
                   area: Annotated[str | None, Query(pattern=r"^(A[1-8])?$")] = None,
                   department: DepartmentCode = None,
                   light: Literal["", "red", "yellow", "green"] | None = None,
                   awaiting: bool = False) -> HTMLResponse:
    filters = views.Filters(area=area or None, department=department or None, light=light or None, awaiting=awaiting)
    apis = apis_of(request)
    tasks, verifications = await asyncio.gather(apis.tasks(session.token, department=filters.department),
                                                apis.verifications(session.token, status="awaiting"))
    return render(request, "overview.html", session, filters=filters,
                  overview=views.overview(catalog_of(request), tasks, filters, {v["task_id"] for v in verifications}),
                  departments=views.filterable_departments(catalog_of(request)))


# -- 任务详情 -----------------------------------------------------------------------------------------


@pages.get("/tasks/{task_id}", response_class=HTMLResponse)
async def task_detail(request: Request, session: CurrentSession, task_id: TaskId, page: PageNumber = 1) -> HTMLResponse:
    apis = apis_of(request)
    offset = (page - 1) * HISTORY_PAGE
    task, history, escalations = await asyncio.gather(
        apis.task(session.token, task_id), apis.history(session.token, task_id, limit=HISTORY_PAGE, offset=offset),
        apis.escalations(session.token, task_id=task_id))
    trails = await asyncio.gather(*(apis.escalation_history(session.token, e["id"]) for e in escalations))
    return render(request, "task.html", session, task=task, history=history["items"],
                  pager=views.Pager(page, HISTORY_PAGE, history["total"]),
                  escalations=list(zip(escalations, trails, strict=True)))


@pages.post("/tasks/{task_id}/extensions/{extension_id}/decision")
async def decide_extension(request: Request, session: CurrentSession, task_id: TaskId,
                           extension_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
                           decision: Annotated[Literal["approve", "reject"], Form()],
                           reason: Annotated[str, Form(min_length=1, max_length=2000)],
                           csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None) -> Response:
    session.check_csrf(csrf)
    await apis_of(request).decide_extension(session.token, extension_id, decision, reason)
    return RedirectResponse(f"/tasks/{task_id}#extensions", status_code=303)


Outcome = Annotated[Literal["verified", "returned"], Form()]
# Required for a return: the form asks for it, the tracker refuses a return without one (422).
VerificationReason = Annotated[str | None, Form(max_length=2000)]


async def verify(request: Request, session: Session, task_id: str, milestone_id: str | None, outcome: str,
                 reason: str | None, csrf: str | None) -> Response:
    session.check_csrf(csrf)
    await apis_of(request).verify(session.token, task_id, milestone_id, outcome, (reason or "").strip() or None)
    return RedirectResponse(f"/tasks/{task_id}#verifications", status_code=303)


@pages.post("/tasks/{task_id}/verification")
async def verify_task(request: Request, session: CurrentSession, task_id: TaskId, outcome: Outcome,
                      reason: VerificationReason = None,
                      csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None) -> Response:
    """办结销号 of the task's done report: verified (销号) or returned (退回) with a reason."""
    return await verify(request, session, task_id, None, outcome, reason, csrf)


@pages.post("/tasks/{task_id}/milestones/{milestone_id}/verification")
async def verify_milestone(request: Request, session: CurrentSession, task_id: TaskId, milestone_id: MilestoneId,
                           outcome: Outcome, reason: VerificationReason = None,
                           csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None) -> Response:
    """办结销号 of the milestone's completion."""
    return await verify(request, session, task_id, milestone_id, outcome, reason, csrf)


# -- 指标 ---------------------------------------------------------------------------------------------


@pages.get("/indicators", response_class=HTMLResponse)
async def indicators(request: Request, session: CurrentSession, period: PeriodQuery = None) -> HTMLResponse:
    answer = await apis_of(request).indicators(session.token, period or None)
    return render(request, "indicators.html", session, answer=answer)


def months_of(period: str) -> list[str]:
    """The months of the year a period lies in: the chart's periods."""
    year = period[:4]
    return [f"{year}-{month:02d}" for month in range(1, 13)]


@pages.get("/indicators/{indicator_id}", response_class=HTMLResponse)
async def indicator_detail(request: Request, session: CurrentSession, indicator_id: IndicatorId,
                           period: PeriodQuery = None, department: DepartmentCode = None,
                           page: PageNumber = 1) -> HTMLResponse:
    apis, period, department = apis_of(request), period or None, department or None
    detail = await apis.indicator(session.token, indicator_id, period=period, department=department,
                                  limit=CASES_PAGE, offset=(page - 1) * CASES_PAGE)
    months = months_of(detail["period"])
    monthly = await asyncio.gather(*(apis.indicator(session.token, indicator_id, period=month,
                                                    department=department, limit=1) for month in months))
    chart = {"periods": months, "values": [m["value"] for m in monthly], "target": detail["target"],
             "target_max": detail["target_max"], "forecast": [m["forecast"] for m in monthly]}
    cases = detail.get("cases")
    return render(request, "indicator.html", session, detail=detail, chart=chart, department=department,
                  pager=views.Pager(page, CASES_PAGE, cases["total"]) if cases else None)


# -- 部门 ---------------------------------------------------------------------------------------------


@pages.get("/departments", response_class=HTMLResponse)
async def departments(request: Request, session: CurrentSession) -> HTMLResponse:
    apis, catalog = apis_of(request), catalog_of(request)
    details, indicator_answer, escalations = await asyncio.gather(
        apis.tasks(session.token, milestones=True), apis.indicators(session.token), apis.escalations(session.token))
    figures = [f for item in indicator_answer["items"] for f in item["departments"]]
    cards = scorecard.scorecards(catalog, details, figures, escalations, today_of(request))
    return render(request, "departments.html", session, ranking=scorecard.ranking(cards),
                  period=indicator_answer["period"])


# -- 导出 ---------------------------------------------------------------------------------------------


def download(table: tables.Table, fmt: str, stem: str) -> Response:
    body, media = (to_xlsx(table), XLSX) if fmt == "xlsx" else (to_csv(table), CSV)
    return Response(body, media_type=media,
                    headers={"content-disposition": f"attachment; filename=\"{stem}.{fmt}\""})


@pages.get("/exports/ledger.{fmt}")
async def export_ledger(request: Request, session: CurrentSession, fmt: Format) -> Response:
    tasks = await apis_of(request).tasks(session.token)
    return download(tables.ledger(catalog_of(request), tasks), fmt, f"duban-ledger-{today_of(request)}")


@pages.get("/exports/indicators.{fmt}")
async def export_indicators(request: Request, session: CurrentSession, fmt: Format,
                            period: PeriodQuery = None) -> Response:
    answer = await apis_of(request).indicators(session.token, period or None)
    return download(tables.indicator_table(answer), fmt, f"duban-indicators-{answer['period']}")


# -- 督查通报 -------------------------------------------------------------------------------------------

BulletinId = Annotated[int, Path(ge=1, le=2**63 - 1)]
BULLETINS_PAGE = 20


@pages.get("/bulletins", response_class=HTMLResponse)
async def list_bulletins(request: Request, session: CurrentSession, pool: Pool, page: PageNumber = 1) -> HTMLResponse:
    """Every signed-in reader sees the bulletins: the district office circulates them to all departments."""
    async with pool.acquire() as conn:
        items, total = await store.list_bulletins(conn, limit=BULLETINS_PAGE, offset=(page - 1) * BULLETINS_PAGE)
    last_week = bulletin_domain.week_of(today_of(request) - timedelta(days=7))
    return render(request, "bulletins.html", session, items=items, pager=views.Pager(page, BULLETINS_PAGE, total),
                  last_week=last_week)


@pages.post("/bulletins")
async def issue_bulletin(request: Request, session: CurrentSession, pool: Pool,
                         week: Annotated[str, Form(pattern=r"^[0-9]{4}-W[0-9]{2}$")],
                         csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None) -> Response:
    session.check_csrf(csrf)
    if not session.decides:
        raise forbidden("only the district office issues the 督查通报")
    try:
        bulletin_domain.week_days(week)
    except bulletin_domain.BadWeek as error:
        raise Problem(422, "bad-week", str(error)) from None
    issued = await bulletins.issue(apis=apis_of(request), token=session.token, issued_by=session.principal.subject,
                                   catalog=catalog_of(request), pool=pool, week=week,
                                   now=request.app.state.settings.clock())
    return RedirectResponse(f"/bulletins/{issued.id}", status_code=303)


async def bulletin_or_404(pool: Pool, bulletin_id: int):
    async with pool.acquire() as conn:
        row = await store.get_bulletin(conn, bulletin_id)
    if row is None:
        raise Problem(404, "bulletin-not-found", f"no bulletin {bulletin_id}")
    return row


# Declared before /bulletins/{bulletin_id}, which would otherwise take "7.docx" for an id.
@pages.get("/bulletins/{bulletin_id}.docx")
async def bulletin_document(session: CurrentSession, pool: Pool, bulletin_id: BulletinId) -> Response:
    row = await bulletin_or_404(pool, bulletin_id)
    return Response(row["docx"], media_type=DOCX,
                    headers={"content-disposition": f"attachment; filename=\"duban-bulletin-{row['week']}.docx\""})


@pages.get("/bulletins/{bulletin_id}", response_class=HTMLResponse)
async def bulletin_page(request: Request, session: CurrentSession, pool: Pool, bulletin_id: BulletinId) -> HTMLResponse:
    return render(request, "bulletin.html", session, row=await bulletin_or_404(pool, bulletin_id))
