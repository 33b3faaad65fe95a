"""The tracker's read API: tasks with their current state and history."""

from __future__ import annotations

from typing import Annotated, Literal

import asyncpg
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from duban.problems import Problem
from services.tracker import store

router = APIRouter(prefix="/v1")


def get_pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


Pool = Annotated[asyncpg.Pool, Depends(get_pool)]


class Page(BaseModel):
    items: list[dict]
    total: int
    limit: int
    offset: int


@router.get("/tasks", response_model=Page)
async def list_tasks(
    pool: Pool,
    area: Annotated[str | None, Query(pattern=r"^A[1-8]$")] = None,
    department: Annotated[str | None, Query(pattern=r"^[a-z0-9-]+$")] = None,
    status: Literal["not_started", "in_progress", "done", "blocked"] | None = None,
    light: Literal["green", "yellow", "red"] | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page:
    async with pool.acquire() as conn:
        items, total = await store.list_tasks(conn, area=area, department=department, status=status, light=light,
                                              limit=limit, offset=offset)
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.get("/tasks/{task_id}")
async def get_task(pool: Pool, task_id: str) -> dict:
    async with pool.acquire() as conn:
        task = await store.get_task(conn, task_id)
    if task is None:
        raise Problem(404, "task-not-found", f"no task {task_id!r}; the plan's tasks are T01–T28")
    return task
