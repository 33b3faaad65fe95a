"""The dependencies every service's HTTP routes share, written once: the database pool, the caller
(duban/auth.py: any authenticated principal, or one that may change things) and paging.

Every list endpoint pages with `limit` (1–PAGE_SIZE_MAX, default PAGE_SIZE_DEFAULT) and `offset`."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Query, Request

from duban.auth import ChangingPrincipal, CurrentPrincipal, authenticated
from duban.pg import BIGINT_MAX

__all__ = ["PAGE_SIZE_DEFAULT", "PAGE_SIZE_MAX", "ChangingPrincipal", "CurrentPrincipal", "Limit", "Offset", "Pool",
           "authenticated", "get_pool"]

PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 200


def get_pool(request: Request) -> asyncpg.Pool:
    """The service's pool, opened by its lifespan."""
    return request.app.state.pool


Pool = Annotated[asyncpg.Pool, Depends(get_pool)]
Limit = Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX, description="page size")]
Offset = Annotated[int, Query(ge=0, le=BIGINT_MAX, description="items to skip")]
