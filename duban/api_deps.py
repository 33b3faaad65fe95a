"""The dependencies every service's HTTP routes share, written once: the database pool, the caller
(duban/auth.py: any authenticated principal, or one that may change things), paging, and what a service's
wiring put on app.state for its module-level routes (the plan catalog, the clock, office hours).

Every list endpoint pages with `limit` (1–PAGE_SIZE_MAX, default PAGE_SIZE_DEFAULT) and `offset`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Query, Request

from duban.auth import ChangingPrincipal, CurrentPrincipal, authenticated
from duban.catalog import Catalog
from duban.pg import BIGINT_MAX
from duban.workcal import OfficeHours

__all__ = ["PAGE_SIZE_DEFAULT", "PAGE_SIZE_MAX", "ChangingPrincipal", "Clock", "CurrentPrincipal", "Hours", "Limit",
           "Offset", "PlanCatalog", "Pool", "authenticated", "from_app_state", "get_pool"]

PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 200


def get_pool(request: Request) -> asyncpg.Pool:
    """The service's pool, opened by its lifespan."""
    return request.app.state.pool


Pool = Annotated[asyncpg.Pool, Depends(get_pool)]
Limit = Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX, description="page size")]
Offset = Annotated[int, Query(ge=0, le=BIGINT_MAX, description="items to skip")]


def from_app_state(name: str) -> Callable[[Request], Any]:
    """A dependency on `app.state.<name>`, put there once by the service's wiring (its api.install)."""
    def read(request: Request) -> Any:
        return getattr(request.app.state, name)
    read.__name__ = f"app_state_{name}"
    return read


PlanCatalog = Annotated[Catalog, Depends(from_app_state("catalog"))]
Clock = Annotated[Callable[[], datetime], Depends(from_app_state("clock"))]
Hours = Annotated[OfficeHours, Depends(from_app_state("hours"))]
