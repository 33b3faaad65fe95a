"""The indicators' read API: every figure with the cases behind it, so each number can be explained
case by case. Errors are RFC 9457 problem documents."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Query

from duban.api_deps import (PAGE_SIZE_DEFAULT, CurrentPrincipal, Hours, Limit, Offset, PlanCatalog, Pool, authenticated,
                            from_app_state)
from duban.auth import forbidden
from duban.catalog import Catalog
from duban.catalog.models import Indicator
from duban.problems import Problem
from duban.workcal import OfficeHours
from services.metrics import store
from services.metrics.exposition import open_clocks_now
from services.metrics.domain.indicators import ALL_DEPARTMENTS, Figure, Period, build_figures, civil_date, read_clock
from services.metrics.settings import MetricsSettings

PERIOD_PATTERN = r"^[1-9][0-9]{3}(-Q[1-4]|-(0[1-9]|1[0-2]))?$"
HISTORY_SHOWN = 100


PeriodQuery = Annotated[str | None, Query(pattern=PERIOD_PATTERN,
                                          description="2021, 2021-Q3 or 2021-09; default: the current year")]


def describe(ind: Indicator, figure: Figure) -> dict:
    return {**asdict(figure), "name": ind.name, "task": ind.task, "aggregate": ind.aggregate,
            "comparison": ind.comparison, "aspirational": ind.aspirational, "deadline": ind.deadline,
            "feed": ind.feed.model_dump()}


# Every route needs a bearer token; a department sees the figures and cases of its own department only.
router = APIRouter(prefix="/v1", dependencies=[Depends(authenticated)])
Settings = Annotated[MetricsSettings, Depends(from_app_state("settings"))]


def install(app: FastAPI, catalog: Catalog, hours: OfficeHours, settings: MetricsSettings) -> FastAPI:
    """Put on app.state what the routes read besides the pool and the token verifier; returns the app."""
    app.state.catalog, app.state.hours, app.state.settings = catalog, hours, settings
    return app


async def figures_of(conn: asyncpg.Connection, catalog: Catalog, hours: OfficeHours, settings: MetricsSettings,
                     period: str, case_type: str | None = None) -> list[Figure]:
    now = settings.clock()
    open_by_group, _ = open_clocks_now(hours, await store.read_open_cases(conn, case_type=case_type), now)
    return build_figures(catalog, await store.read_sums(conn, period=period), open_by_group,
                         today=civil_date(now), periods=[period], approx_tolerance=settings.approx_tolerance)


def period_or_default(period: str | None, settings: MetricsSettings) -> str:
    return period or str(civil_date(settings.clock()).year)


def open_case_view(row: asyncpg.Record, hours: OfficeHours, now: datetime) -> dict:
    reading = read_clock(hours, opened_at=row["opened_at"], as_of=max(now, row["opened_at"]))
    return {**dict(row), "clock": reading.clock._asdict() if reading.clock else None,
            "clock_error": reading.error}


@router.get("/indicators")
async def list_indicators(pool: Pool, principal: CurrentPrincipal, catalog: PlanCatalog, hours: Hours,
                          settings: Settings, period: PeriodQuery = None) -> dict:
    period = period_or_default(period, settings)
    async with pool.acquire() as conn:
        figures = await figures_of(conn, catalog, hours, settings, period)
        uncovered = await store.count_uncovered(conn)
    items = []
    for ind in catalog.indicators:
        mine = [f for f in figures if f.indicator == ind.id]
        plan_wide = next(f for f in mine if f.department == ALL_DEPARTMENTS)
        items.append({**describe(ind, plan_wide),
                      "departments": [asdict(f) for f in mine if f.department != ALL_DEPARTMENTS
                                      and principal.may_see_department(f.department)]})
    return {"period": period, "items": items,
            "calendar": {"version": hours.calendar.version, "uncovered_cases": uncovered,
                         "provisional_years": list(hours.calendar.provisional_years),
                         "covers_next_year": hours.calendar.is_covered(civil_date(settings.clock()).year + 1)}}


@router.get("/indicators/{indicator_id}")
async def get_indicator(
    pool: Pool, principal: CurrentPrincipal, catalog: PlanCatalog, hours: Hours, settings: Settings,
    indicator_id: str, period: PeriodQuery = None,
    department: Annotated[str | None, Query(pattern=r"^[a-z0-9-]+$",
                                            description="default: all (a department's token: its own)")] = None,
    limit: Limit = PAGE_SIZE_DEFAULT,
    offset: Offset = 0,
) -> dict:
    try:
        ind = catalog.indicator(indicator_id)
    except KeyError:
        raise Problem(404, "indicator-not-found", f"no indicator {indicator_id!r} in the plan",
                      known=[i.id for i in catalog.indicators]) from None
    # A department sees its own figure and cases, not the other departments' cases behind the plan-wide one.
    department = department or principal.department or ALL_DEPARTMENTS
    if not principal.sees_everything and department != principal.department:
        raise forbidden(f"{principal.department} may see only its own figures and cases of {ind.id}")
    if department != ALL_DEPARTMENTS and department not in ind.feed.departments:
        raise Problem(404, "department-not-found", f"{department!r} does not feed {ind.id}",
                      known=[ALL_DEPARTMENTS, *ind.feed.departments])
    key = period_or_default(period, settings)
    async with pool.acquire() as conn:
        figure = next(f for f in await figures_of(conn, catalog, hours, settings, key, ind.feed.case_type)
                      if f.indicator == ind.id and f.department == department)
        history = await store.read_history(conn, indicator_id=ind.id, period=key, department=department,
                                           latest=HISTORY_SHOWN)
        body = {**describe(ind, figure), "definition": ind.definition, "source_text": ind.source_text,
                "history": [dict(h) for h in history]}
        if ind.feed.kind == "report":
            return body
        cases = await store.list_period_cases(conn, case_type=ind.feed.case_type, period=Period.parse(key),
                                              department=department, limit=limit, offset=offset)
        open_rows = await store.read_open_cases(conn, case_type=ind.feed.case_type) \
            if Period.parse(key).contains(civil_date(settings.clock())) else []
    body["cases"] = {"items": cases, "total": figure.samples + figure.unmeasured,
                     "limit": limit, "offset": offset}
    now = settings.clock()
    body["open_cases"] = [open_case_view(r, hours, now) for r in open_rows
                          if department in (ALL_DEPARTMENTS, r["department"])]
    return body
